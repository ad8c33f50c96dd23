"""The ONNX Runtime engine: the exported graph on the CPU execution provider, fp32 or int8 (QDQ)."""

from __future__ import annotations

import logging
from typing import Any

from index.model.engines.base import EngineOutput
from index.model.engines.export import OUTPUT_NAMES
from index.model.engines.exported import ExportedEngine

log = logging.getLogger(__name__)


class OnnxRuntimeEngine(ExportedEngine):
    name = "onnxruntime"
    precisions = ("fp32", "int8")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None

    @staticmethod
    def runtime_version() -> str:
        import onnxruntime

        return str(onnxruntime.__version__)

    def _load(self) -> None:
        import onnxruntime as ort

        path = self.model_path()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads waste the cores the decoder threads need between forward passes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        embeddings, probabilities = self._session.get_outputs()
        self._set_widths(int(embeddings.shape[1]), int(probabilities.shape[1]))
        log.info("loaded %s from %s (onnxruntime %s, %s)", self.spec.name, path, ort.__version__, self.dtype)

    def _run(self, crops: Any) -> EngineOutput:
        # InferenceSession.run is safe to call from several threads at once.
        embeddings, probabilities = self._session.run(list(OUTPUT_NAMES), self._feed(crops))
        return self._checked_output(embeddings, probabilities)
