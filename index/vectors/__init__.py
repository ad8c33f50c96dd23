"""Vector stores behind the one small interface the service uses.

`faiss` (the default): `index.vectors.faiss_index.VectorIndex`, an in-process index saved as a file in the
data directory.
`milvus`: `index.vectors.milvus.MilvusVectorStore`, a collection on a Milvus server or in a local
milvus-lite file, shared by every process. `ImageIndex._open_vectors` chooses one from the settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from index.vectors.faiss_index import IndexMeta


class VectorStore(Protocol):
    """Unit vectors by image id, searched by inner product; derived from the metadata database."""

    meta: IndexMeta
    ef_search: int
    dirty: bool  # changed since the last `save` (an in-process index); always False for a server

    def __len__(self) -> int: ...
    def ids(self) -> NDArray[np.int64]: ...
    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None: ...
    def remove(self, ids: NDArray[np.int64]) -> None: ...
    def search(
        self, queries: NDArray[np.float32], k: int, allowed: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...
    def save(self, path: Path) -> None: ...


@runtime_checkable
class ClassFilteredSearch(Protocol):
    """A store that keeps each image's top classes and filters by them itself (no list of allowed ids)."""

    def search_classes(
        self, queries: NDArray[np.float32], k: int, classes: Iterable[int]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...


def close_vector_store(vectors: VectorStore) -> None:
    """Release a store's connections (an in-process index has none)."""
    close = getattr(vectors, "close", None)
    if close is not None:
        close()
