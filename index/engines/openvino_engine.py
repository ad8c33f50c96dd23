"""The OpenVINO engine: the exported graph compiled by OpenVINO's CPU plugin, fp32, bf16 or int8 (QDQ)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from index.engines.base import EngineOutput, cpu_has_native_bf16
from index.engines.export import INPUT_NAME, OUTPUT_NAMES
from index.engines.exported import ExportedEngine

log = logging.getLogger(__name__)

# A batch is split across throughput streams only when each share has at least this many images.
SPLIT_MIN_PER_STREAM = 4
# OpenVINO's own names for the precision of the layers it does not run in int8.
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVinoEngine(ExportedEngine):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compiled: Any = None
        self._request: Any = None
        self._streams: list[Any] = []  # requests of the throughput compilation, made on the first large batch
        self.split_min_per_stream = SPLIT_MIN_PER_STREAM
        self._core: Any = None
        self._config: dict[str, str] = {}
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
        core.set_property({"CACHE_DIR": str(self.settings.model_cache_dir / "openvino")})
        self._core, self._config = core, {"INFERENCE_PRECISION_HINT": _HINTS[self.resolved_precision]}
        # Small batches (an API request's image) run as one request on every core.
        self._compiled = core.compile_model(str(path), "CPU", {**self._config, "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        widths = [self._compiled.output(name).get_partial_shape()[1].get_length() for name in OUTPUT_NAMES]
        self._set_widths(int(widths[0]), int(widths[1]))
        log.info("loaded %s from %s (openvino %s, %s)", self.spec.name, path, ov.get_version(), self.dtype)

    def _stream_requests(self) -> list[Any]:
        """One request per stream of OpenVINO's throughput compilation (its choice: a stream per core or two).

        A stream runs its share of a batch on its own cores, with no barrier between cores at each layer: on 2
        cores, two streams of 16 images ran 1.2 to 1.9 times as many images a second as one request of 32
        using both (`tests/benchmarks/engines.py --only forward`, `streams` rows)."""
        if not self._streams:
            compiled = self._core.compile_model(
                str(self.model_path()), "CPU", {**self._config, "PERFORMANCE_HINT": "THROUGHPUT"}
            )
            count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._streams = [compiled.create_infer_request() for _ in range(max(1, count))]
        return self._streams

    def _run(self, crops: Any) -> EngineOutput:
        feed = self._feed(crops)[INPUT_NAME]
        # One infer request is not safe to share between threads; the callers are serialised here.
        with self._lock:
            per_stream = self.split_min_per_stream
            streams = self._stream_requests() if len(feed) >= per_stream * 2 else []
            if len(streams) < 2:
                result = self._request.infer({INPUT_NAME: feed})
                embeddings, probabilities = (result[name].copy() for name in OUTPUT_NAMES)
                return self._checked_output(embeddings, probabilities)
            parts = [p for p in np.array_split(feed, min(len(streams), len(feed) // per_stream)) if len(p)]
            for request, part in zip(streams, parts, strict=False):
                request.start_async({INPUT_NAME: part})
            outputs: list[list[Any]] = [[], []]
            for request, _part in zip(streams, parts, strict=False):
                request.wait()
                for n, name in enumerate(OUTPUT_NAMES):
                    outputs[n].append(request.get_tensor(name).data.copy())
        return self._checked_output(np.concatenate(outputs[0]), np.concatenate(outputs[1]))
