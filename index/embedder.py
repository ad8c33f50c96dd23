"""The embedder: one forward pass gives the embedding and the ImageNet predictions."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import InvalidArgument
from index.registry import Prediction, Preprocessing, imagenet_labels, resolve_embedding, resolve_model
from index.weights import file_sha256

if TYPE_CHECKING:
    # torch and timm are imported only when a model is loaded: a run that finds everything already
    # indexed never pays for them.
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedResult:
    """Output of one forward pass over a batch."""

    embeddings: NDArray[np.float32]  # (batch, dim), each row L2-normalised
    predictions: list[list[Prediction]]  # per image, best first


def select_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise InvalidArgument(f"IMGSIM_DEVICE={requested} is not a device: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InvalidArgument(f"IMGSIM_DEVICE={requested}, but no such CUDA GPU is available here; use cpu or auto")
    return device


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
