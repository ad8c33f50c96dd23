"""What every inference engine offers the embedder: load once, then uint8 crops in, vectors and class
probabilities out. Nothing here imports torch."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.model.registry import EmbeddingDefinition, ModelSpec
from index.model.weights import file_sha256


@dataclass(frozen=True)
class EngineOutput:
    """One forward pass over a batch: the stored vectors and the ImageNet class probabilities."""

    embeddings: NDArray[np.float32]  # (batch, dim), each row L2-normalised
    probabilities: NDArray[np.float32]  # (batch, classes), softmax of the logits


@dataclass(frozen=True)
class Device:
    """Where an engine other than torch runs (`type` and `str()` read like a `torch.device`'s)."""

    type: str

    def __str__(self) -> str:
        return self.type


CPU = Device("cpu")


class InferenceEngine(ABC):
    """A loaded network and its embedding head, behind one `run`; subclasses implement `_load` / `_run`."""

    name: ClassVar[str]

    def __init__(self, settings: Settings, spec: ModelSpec, embedding: EmbeddingDefinition) -> None:
        self.settings = settings
        self.spec = spec
        self.embedding = embedding
        self.weights_hash = ""
        self.num_features: int | None = spec.num_features
        self.num_classes: int = spec.num_classes
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    @abstractmethod
    def device(self) -> Any:
        """A `torch.device` for the torch engine, a `Device` for the others."""

    @property
    @abstractmethod
    def dtype(self) -> Any:
        """The precision the network runs in (a `torch.dtype`, or its name such as 'float32' or 'int8')."""

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def load(self) -> None:
        """Load the network (exporting it first when no cached export exists). Idempotent.

        Raises:
            WeightsNotFound: the weights file is missing.
            EngineUnavailable: the engine cannot run this model, device or precision.
        """
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def run(self, crops: Any) -> EngineOutput:
        """Embed and classify preprocessed crops, shape (batch, size, size, 3), uint8 RGB."""
        self.load()
        return self._run(crops)

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _run(self, crops: Any) -> EngineOutput: ...

    def weights_file(self) -> Path:
        return self.spec.weights_file(self.settings)

    def read_weights_hash(self) -> str:
        self.weights_hash = cached_file_sha256(self.weights_file())
        return self.weights_hash


@cache
def _sha256_by_stat(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def cached_file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for an unchanged file."""
    st = path.stat()
    return _sha256_by_stat(str(path), st.st_size, st.st_mtime_ns)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 then runs faster than fp32 (emulated bf16 runs slower)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
