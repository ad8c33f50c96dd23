"""Inference engines, one module each, chosen from the settings in one place (`create_engine`).

- torch (`torch_engine`): timm in eager mode; CPU or CUDA, fp32/bf16/fp16. Builds every export.
- onnxruntime (`onnxruntime_engine`): the exported graph; CPU, fp32 or int8.
- openvino (`openvino_engine`): the exported graph; CPU, fp32, bf16 or int8.

Only the chosen engine's runtime is imported, and only when the model loads.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache

from index.config import Settings
from index.errors import EngineUnavailable
from index.model.engines.base import EngineOutput, InferenceEngine
from index.model.registry import EmbeddingDefinition, ModelSpec


@dataclass(frozen=True)
class EngineEntry:
    module: str
    cls: str
    requires: str  # the distribution's import name
    devices: tuple[str, ...]  # device types it is verified on


ENGINES: dict[str, EngineEntry] = {
    "torch": EngineEntry("index.model.engines.torch_engine", "TorchEngine", "torch", ("cpu", "cuda")),
    "onnxruntime": EngineEntry("index.model.engines.onnxruntime_engine", "OnnxRuntimeEngine", "onnxruntime", ("cpu",)),
    "openvino": EngineEntry("index.model.engines.openvino_engine", "OpenVinoEngine", "openvino", ("cpu",)),
}
# Fastest first, per device type, as measured by tests/benchmarks/engines.py (docs/model.md, "Inference engines").
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("openvino", "onnxruntime", "torch"),
    "cuda": ("torch",),
}

__all__ = ["ENGINES", "EngineOutput", "InferenceEngine", "create_engine", "installed_engines"]


def installed_engines() -> list[str]:
    """The engines whose runtime is importable here (nothing is imported to find out)."""
    return [name for name, entry in ENGINES.items() if importlib.util.find_spec(entry.requires) is not None]


@cache
def cuda_present() -> bool:
    """Whether the NVIDIA driver reports a GPU, asked without importing torch."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def device_type(requested: str) -> str:
    if requested == "auto":
        return "cuda" if cuda_present() else "cpu"
    return requested.split(":", 1)[0]


def choose_engine(settings: Settings) -> str:
    """The engine the settings ask for; 'auto' is the fastest installed one verified for the device.

    Raises:
        EngineUnavailable: the engine is not installed or does not run on the device.
    """
    device = device_type(settings.device)
    installed = installed_engines()
    if settings.device == "auto" and device == "cuda" and "torch" not in installed:
        # A GPU, but the default install (no torch extra): the CPU engines run the shipped export.
        device = "cpu"
    if settings.engine == "auto":
        for name in PREFERENCE.get(device, ("torch",)):
            # int8 runs only on the exported engines; otherwise the order holds.
            if name in installed and not (settings.precision == "int8" and name == "torch"):
                return name
        hint = " (a CUDA device needs torch: pip install -r requirements-torch.txt)" if device == "cuda" else ""
        raise EngineUnavailable(f"no inference engine installed for {device} (have: {', '.join(installed)}){hint}")
    entry = ENGINES[settings.engine]
    if settings.engine not in installed:
        hint = "pip install -r requirements-torch.txt" if entry.requires == "torch" else f"pip install {entry.requires}"
        raise EngineUnavailable(f"the {settings.engine} engine is not installed ({hint})")
    if device not in entry.devices:
        raise EngineUnavailable(f"the {settings.engine} engine does not run on {device}")
    return settings.engine


def create_engine(settings: Settings, spec: ModelSpec, embedding: EmbeddingDefinition) -> InferenceEngine:
    """The one place an engine is chosen from the settings (`IMGSIM_ENGINE`, `IMGSIM_DEVICE`).

    Raises:
        EngineUnavailable: see `choose_engine`.
    """
    entry = ENGINES[choose_engine(settings)]
    cls: type[InferenceEngine] = getattr(importlib.import_module(entry.module), entry.cls)
    return cls(settings, spec, embedding)
