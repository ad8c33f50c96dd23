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
from index.model.engines import InferenceEngine, create_engine
from index.model.engines.torch_engine import fold_batch_norms, select_device, select_precision
from index.model.registry import (
    Prediction,
    Preprocessing,
    imagenet_labels,
    model_preprocessing,
    resolve_embedding,
    resolve_model,
)

if TYPE_CHECKING:
    # torch is imported only by the torch engine, and only when it loads; the other engines run a cached
    # export without it.
    import torch

__all__ = ["EmbedResult", "Embedder", "fold_batch_norms", "select_device", "select_precision"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedResult:
    """Output of one forward pass over a batch."""

    embeddings: NDArray[np.float32]  # (batch, dim), each row L2-normalised
    predictions: list[list[Prediction]]  # per image, best first


class Embedder:
    """A loaded model: uint8 crops in, normalised embeddings and top-k ImageNet predictions out.

    The forward pass runs on the engine the settings choose (`index.model.engines.create_engine`).
    """

    def __init__(self, settings: Settings) -> None:
        self.spec = resolve_model(settings.model)
        self.embedding = resolve_embedding(settings.embedding)
        self.top_k = settings.top_k_predictions
        self._settings = settings
        self.engine: InferenceEngine = create_engine(settings, self.spec, self.embedding)
        self._load_lock = threading.Lock()
        self._loader_lock = threading.Lock()
        self._loader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        """Identity of the vectors this embedder produces: model and embedding definition."""
        return f"{self.spec.name}:{self.embedding.name}"

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def weights_hash(self) -> str:
        return self.engine.weights_hash

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    @property
    def device(self) -> Any:
        """A `torch.device` on the torch engine; elsewhere an object with the same `type` and `str()`."""
        return self.engine.device

    @property
    def dtype(self) -> Any:
        """The inference precision: a `torch.dtype` on the torch engine, its name ('float32', 'int8'...) elsewhere."""
        return self.engine.dtype

    @cached_property
    def preprocessing(self) -> Preprocessing:
        return model_preprocessing(self.spec)

    def timm_preprocessing(self) -> Preprocessing:
        """The model's preprocessing as timm's data config gives it (imports timm)."""
        from dataclasses import replace

        return model_preprocessing(replace(self.spec, preprocessing=None))

    @property
    def dim(self) -> int:
        """Length of the vectors (for an unregistered architecture this loads the model to find out)."""
        if self.engine.num_features is None:
            self.load()
        features, classes = self.engine.num_features, self.engine.num_classes
        assert features is not None
        return features + (classes if self.embedding.logits_weight > 0 else 0)

    def load_in_background(self) -> None:
        """Start loading (imports, weights) on another thread, so the caller can decode images meanwhile.

        Safe to call from any thread, as often as wanted: one load is started. The thread is not a daemon, so
        the interpreter waits for it at exit: a process torn down while ONNX Runtime or OpenVINO builds its
        session (and its native thread pools) aborts in C++ (`terminate called without an active exception`).
        """
        with self._loader_lock:
            if not self.loaded and self._loader is None:
                self._loader = threading.Thread(target=self._load_quietly, name="imgsim-model-load")
                self._loader.start()

    def _load_quietly(self) -> None:
        # Errors are not lost: the next load() on the caller's thread raises them again.
        with contextlib.suppress(Exception):
            self.load()

    def load(self) -> Embedder:
        """Load the model on its engine (exporting it once first where the engine needs that). Idempotent.

        Raises:
            WeightsNotFound: the weights file is missing.
            EngineUnavailable: the engine cannot run this model, device or precision.
        """
        with self._load_lock:
            if not self.engine.loaded:
                self.engine.load()
                log.info("%s runs on %s (%s, %s)", self.version, self.device, self.engine.precision, self.engine.name)
        return self

    def forward(self, crops: NDArray[np.uint8] | torch.Tensor) -> EmbedResult:
        """Embed and classify a batch of preprocessed crops, shape (batch, size, size, 3), uint8 RGB."""
        self.load()
        if len(crops) == 0:
            return EmbedResult(np.zeros((0, self.dim), np.float32), [])
        out = self.engine.run(crops)
        return EmbedResult(out.embeddings, top_predictions(out.probabilities, self.top_k))


def top_predictions(probabilities: NDArray[np.float32], k: int) -> list[list[Prediction]]:
    """The `k` most probable classes of each row, best first, with their labels."""
    labels = imagenet_labels()
    k = min(k, probabilities.shape[1])
    # Stable sort of the negated scores: ties keep the lower class index first.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [Prediction(labels[int(i)], int(i), float(row[i])) for i in idx]
        for row, idx in zip(probabilities, order, strict=True)
    ]
