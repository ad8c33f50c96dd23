"""The OpenVINO engine: the exported graph compiled by OpenVINO's CPU plugin, fp32, bf16 or int8 (QDQ)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from index.model.engines.base import EngineOutput, cpu_has_native_bf16
from index.model.engines.export import OUTPUT_NAMES
from index.model.engines.exported import ExportedEngine
from index.model.engines.prepare import preparing

log = logging.getLogger(__name__)

# OpenVINO's own names for the precision of the layers it does not run in int8.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# A first compilation of the default model on a 2-core machine (measured; later starts read OpenVINO's cache).
COMPILE_SECONDS = 1


class OpenVinoEngine(ExportedEngine):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compiled: Any = None
        self._request: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def runtime_version() -> str:
        import openvino

        return str(openvino.get_version()).split("-")[0]

    def auto_precision(self) -> str:
        # As with torch: bf16 where the CPU runs it natively (OpenVINO would otherwise pick it by itself on
        # such a CPU, and emulate nothing elsewhere), fp32 everywhere else.
        return "bf16" if cpu_has_native_bf16() else "fp32"

    def _load(self) -> None:
        import openvino as ov

        path = self.model_path()
        core = ov.Core()
        # OpenVINO keeps the compiled network beside the export: the next start skips compilation.
        cache_dir = self.settings.model_cache_dir / "openvino"
        core.set_property({"CACHE_DIR": str(cache_dir)})
        hint = _HINTS[self.resolved_precision]
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            # One request at a time, using every core: batches come one after another from the pipeline
            # or the micro-batcher.
            "PERFORMANCE_HINT": "LATENCY",
        }
        # OpenVINO's cache files are named by its own hash; this marker says whether this export was
        # compiled here before, so that only a first compilation is announced.
        marker = cache_dir / f"{path.stem}-{hint}-{self.runtime_version()}.compiled"
        if marker.is_file():
            self._compiled = core.compile_model(str(path), "CPU", config)
        else:
            with preparing(f"OpenVINO compiles {self.spec.name} ({hint}) for this CPU", COMPILE_SECONDS):
                self._compiled = core.compile_model(str(path), "CPU", config)
            with contextlib.suppress(OSError):
                marker.touch()
        self._request = self._compiled.create_infer_request()
        widths = [self._compiled.output(name).get_partial_shape()[1].get_length() for name in OUTPUT_NAMES]
        self._set_widths(int(widths[0]), int(widths[1]))
        log.info("loaded %s from %s (openvino %s, %s)", self.spec.name, path, ov.get_version(), self.dtype)

    def _run(self, crops: Any) -> EngineOutput:
        # One infer request is not safe to share between threads; the callers are serialised here.
        with self._lock:
            result = self._request.infer(self._feed(crops))
            embeddings = result[self._compiled.output(OUTPUT_NAMES[0])].copy()
            probabilities = result[self._compiled.output(OUTPUT_NAMES[1])].copy()
        return self._checked_output(embeddings, probabilities)
