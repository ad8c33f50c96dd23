"""What the engines that run the exported graph share: precision choice, the cache file, the output check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from index.errors import EngineUnavailable
from index.model.engines.base import CPU, Device, EngineOutput, InferenceEngine
from index.model.engines.export import INPUT_NAME, OPSET, ensure_exported, exported_path, int8_reduce_range

# What made the fp32 export (part of its cache key).
FP32_TOOL = f"onnx-opset{OPSET}"


class ExportedEngine(InferenceEngine):
    """Runs the cached ONNX export on the CPU; subclasses open it with their runtime."""

    # The precisions this engine runs; "auto" resolves to one of them.
    precisions: tuple[str, ...] = ("fp32", "int8")

    @property
    def device(self) -> Device:
        return CPU

    @property
    def dtype(self) -> str:
        return {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}[self.resolved_precision]

    @property
    def resolved_precision(self) -> str:
        requested = self.settings.precision
        if requested == "auto":
            return self.auto_precision()
        if requested not in self.precisions:
            raise EngineUnavailable(f"the {self.name} engine runs {', '.join(self.precisions)}, not {requested}")
        return requested

    def auto_precision(self) -> str:
        return "fp32"

    @staticmethod
    def runtime_version() -> str:
        raise NotImplementedError

    def model_path(self) -> Path:
        """The cached export this engine runs (the weights are hashed, not loaded)."""
        if self.settings.device not in ("auto", "cpu"):
            raise EngineUnavailable(f"the {self.name} engine runs on the CPU, not {self.settings.device}")
        # One fp32 graph serves every engine and precision but int8, which ONNX Runtime's quantizer makes
        # (keyed by its version) and both engines run; bf16 is the runtime's choice at compile time.
        weights_hash = self.read_weights_hash()
        fp32 = exported_path(self.settings, self.spec, self.embedding, weights_hash, "fp32", FP32_TOOL)
        if self.resolved_precision != "int8":
            return ensure_exported(self.settings, self.spec, self.embedding, "fp32", fp32)
        # 7-bit weights where the CPU lacks VNNI (a model made on one CPU is not run on the other from one cache).
        tool = f"onnxruntime-{quantizer_version()}" + ("-7bit" if int8_reduce_range() else "")
        int8 = exported_path(self.settings, self.spec, self.embedding, weights_hash, "int8", tool)
        return ensure_exported(self.settings, self.spec, self.embedding, "int8", int8, fp32=fp32)

    def _set_widths(self, dim: int, classes: int) -> None:
        """Learn the feature width from the loaded graph (needed for unregistered architectures)."""
        self.num_classes = classes
        self.num_features = dim - (classes if self.embedding.logits_weight > 0 else 0)

    def _checked_output(self, embeddings: Any, probabilities: Any) -> EngineOutput:
        return EngineOutput(np.asarray(embeddings, dtype=np.float32), np.asarray(probabilities, dtype=np.float32))

    def _feed(self, crops: Any) -> dict[str, Any]:
        return {INPUT_NAME: np.ascontiguousarray(np.asarray(crops, dtype=np.uint8))}


def quantizer_version() -> str:
    """The version of the int8 quantizer (ONNX Runtime's), read from its metadata without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError as exc:
        raise EngineUnavailable("int8 quantization needs onnxruntime") from exc
