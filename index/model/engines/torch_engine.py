"""The torch engine: the timm network in eager mode, on the CPU or a CUDA device, fp32, bf16 or fp16.

It is also where the other engines' exports come from (`build_network`, `EmbeddingGraph`).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from index.config import Settings
from index.errors import EngineUnavailable, InvalidArgument
from index.model.engines.base import EngineOutput, InferenceEngine
from index.model.registry import EmbeddingDefinition, ModelSpec, model_preprocessing

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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

    Raises:
        EngineUnavailable: int8, which only the exported engines run.
    """
    import torch

    if requested == "fp32":
        return torch.float32
    if requested == "bf16":
        return torch.bfloat16
    if requested == "fp16":
        return torch.float16
    if requested == "int8":
        raise EngineUnavailable("int8 runs on the onnxruntime and openvino engines, not torch")
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


def build_network(settings: Settings, spec: ModelSpec) -> torch.nn.Module:
    """The timm network with its weights (local files only), in eval mode, batch norms folded, fp32 on the CPU.

    Raises:
        WeightsNotFound: the weights file is missing.
    """
    import timm
    import torch

    weights = spec.weights_file(settings)
    model = timm.create_model(spec.timm_name, pretrained=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model.load_state_dict(spec.convert(state, model), strict=True)
    model.eval()
    fold_batch_norms(model)
    return model


def embedding_head(
    fmap: torch.Tensor, mean_pooled: torch.Tensor, logits: torch.Tensor, e: EmbeddingDefinition
) -> torch.Tensor:
    """The stored vector from the feature map and the logits, as the embedding definition says."""
    import torch

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


def _embedding_graph_class() -> type:
    import torch

    class EmbeddingGraph(torch.nn.Module):
        """uint8 NHWC crops -> (vectors, probabilities): normalisation, network, pooling and softmax in one
        graph, the form every exported engine runs."""

        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self, model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, e: EmbeddingDefinition):
            super().__init__()
            self.model = model
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.definition = e

        def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = crops.permute(0, 3, 1, 2).float().sub(self.mean).div(self.std)
            fmap = self.model.forward_features(x)  # type: ignore[operator]
            pooled = fmap.mean(dim=(2, 3))
            logits = self.model.get_classifier()(pooled)  # type: ignore[operator]
            return embedding_head(fmap, pooled, logits, self.definition), torch.softmax(logits, dim=1)

    return EmbeddingGraph


def embedding_graph(settings: Settings, spec: ModelSpec, e: EmbeddingDefinition, mean: Any, std: Any) -> Any:
    """The whole embedding computation as one fp32 CPU module, ready to export."""
    import torch

    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return _embedding_graph_class()(build_network(settings, spec), m, s, e).eval()


class TorchEngine(InferenceEngine):
    """timm in eager mode; the only engine for CUDA (and nvJPEG decoding)."""

    name = "torch"

    def __init__(self, settings: Settings, spec: ModelSpec, embedding: EmbeddingDefinition) -> None:
        super().__init__(settings, spec, embedding)
        self.model: torch.nn.Module | None = None
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        # The forward pass is not re-entrant on one module across threads in a useful way; callers from
        # several threads (the web API) are serialised here and batched upstream.
        self._lock = threading.Lock()

    @cached_property
    def device(self) -> torch.device:
        return select_device(self.settings.device)

    @cached_property
    def dtype(self) -> torch.dtype:
        return select_precision(self.settings.precision, self.device)

    def _load(self) -> None:
        import torch

        model = build_network(self.settings, self.spec)
        # Weights in the inference dtype (not autocast, which re-casts every weight on every call); the
        # classifier stays fp32, so logits and predictions are computed from the fp32-pooled features.
        model.to(self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        model.get_classifier().float()  # type: ignore[operator]
        self.read_weights_hash()
        self.num_features, self.num_classes = int(model.num_features), int(model.num_classes)  # type: ignore[arg-type]
        p = model_preprocessing(self.spec)
        self._mean = torch.tensor(p.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(p.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.model = model
        log.info("loaded %s on %s (%s, torch)", self.spec.name, self.device, self.dtype)

    def _run(self, crops: Any) -> EngineOutput:
        import torch

        with torch.inference_mode():
            model = self.model
            assert model is not None and self._mean is not None and self._std is not None
            batch = torch.as_tensor(crops).to(self.device, non_blocking=True)
            x = batch.permute(0, 3, 1, 2).float().sub_(self._mean).div_(self._std)
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            with self._lock:
                fmap = model.forward_features(x)  # type: ignore[operator]
            fmap = fmap.float()
            pooled = fmap.mean(dim=(2, 3))
            # timm names the head per architecture (`classifier`, `fc`, `head`...); get_classifier() finds it.
            logits = model.get_classifier()(pooled)  # type: ignore[operator]
            vectors = embedding_head(fmap, pooled, logits, self.embedding)
            probs = torch.softmax(logits, dim=1)
            return EngineOutput(
                vectors.cpu().numpy().astype(np.float32, copy=False),
                probs.cpu().numpy().astype(np.float32, copy=False),
            )
