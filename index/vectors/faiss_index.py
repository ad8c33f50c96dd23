"""The FAISS vector index: a derived, persisted cache of the embeddings kept in SQLite.

Vectors are L2-normalised, so one inner-product index serves all three metrics: cosine similarity is the
inner product, dot product equals it, and Euclidean distance is sqrt(2 - 2 * cosine). The ranking is the same
for all three; only the reported score differs.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from index.storage.permissions import file_mode

_MAGIC = b"IMGSIMVI"
_HEADER = struct.Struct("<8sI")  # magic, header-json length
# A CRC32 of header and payload after the payload: damage that keeps the file readable (a scribbled block,
# a bad sector) would otherwise load as garbage vectors instead of triggering a rebuild.
_TRAILER = struct.Struct("<8sI")  # magic, crc32
_TRAILER_MAGIC = b"IMGSIMCK"


# Graph quality while building HNSW: higher is slower to build and gives better recall at the same efSearch.
EF_CONSTRUCTION = 80


class IndexFileError(Exception):
    """The index file is missing, truncated or not an index file; the caller rebuilds it."""


@dataclass(frozen=True)
class IndexMeta:
    """What the index was built from; compared with the store on open."""

    model: str  # embedder version: model and embedding definition
    dim: int
    kind: str  # "flat" or "hnsw"


_UNIT_SQUARED_RESOLUTION = 8 * float(np.finfo(np.float32).eps)


def checked_vectors(ids: NDArray[np.int64], vectors: NDArray[np.float32], dim: int) -> NDArray[np.float32]:
    """`vectors` as contiguous float32, one row of `dim` per id (what every vector store adds).

    Raises:
        ValueError: the shape does not match.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(ids), dim):
        raise ValueError(f"expected vectors of shape ({len(ids)}, {dim}), got {vectors.shape}")
    return vectors


def scores_for_metric(inner: NDArray[np.float32], metric: str) -> NDArray[np.float32]:
    """Turn inner products of unit vectors into the metric's score (similarity, or distance for euclidean)."""
    if metric == "euclidean":
        squared = 2.0 - 2.0 * inner.astype(np.float64)
        # A float32 unit vector's norm is 1 only to about 1e-7, which the square root would blow up into a
        # distance of 3e-4 between an image and itself: below that resolution the distance is 0.
        squared[squared < _UNIT_SQUARED_RESOLUTION] = 0.0
        return np.sqrt(squared).astype(np.float32)
    return inner.astype(np.float32, copy=False)


# Below this many queries a search runs on the calling thread alone: the web API runs searches one query at
# a time from several threads, and an OpenMP team per query mostly waits for its slowest (or descheduled)
# thread; with the cores busy that costs several times the search itself.
_PARALLEL_QUERIES = 20


@contextmanager
def _single_threaded(enabled: bool) -> Iterator[None]:
    """OpenMP's thread count is a per-thread setting: this changes only the calling thread's searches."""
    if not enabled:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class ReadWriteLock:
    """Many concurrent readers (searches) or one writer (add, remove, save)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class VectorIndex:
    """An id-mapped FAISS index over unit vectors (inner product), safe to search from many threads."""

    def __init__(
        self, meta: IndexMeta, hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = EF_CONSTRUCTION
    ) -> None:
        self.meta = meta
        self.ef_search = ef_search
        self._index = self._create(meta, hnsw_m, ef_construction)
        # HNSW cannot remove vectors; removed ids are masked at search time until the next rebuild.
        self._removed: set[int] = set()
        self._lock = ReadWriteLock()
        self.dirty = False

    @staticmethod
    def _create(meta: IndexMeta, hnsw_m: int, ef_construction: int) -> faiss.Index:
        if meta.kind == "flat":
            inner = faiss.IndexFlatIP(meta.dim)
        elif meta.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(meta.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = ef_construction
        else:
            raise ValueError(f"unknown index kind {meta.kind!r}")
        return faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._removed)

    def ids(self) -> NDArray[np.int64]:
        """Every id the index will return, sorted."""
        with self._lock.read():
            all_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            if self._removed:
                all_ids = all_ids[~np.isin(all_ids, np.fromiter(self._removed, np.int64))]
        return np.sort(all_ids)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        if len(ids) == 0:
            return
        vectors = checked_vectors(ids, vectors, self.meta.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock.write():
            if self._removed:
                # An HNSW graph still holds a removed (masked) vector: adding that id back (an image restored
                # from the trash) unmasks it. Both came from the same stored embedding, which only a re-embed
                # changes, and that rebuilds the whole index.
                masked = np.isin(ids, np.fromiter(self._removed, np.int64)) & self._holds(ids)
                self._removed.difference_update(int(i) for i in ids[masked])
                ids, vectors = ids[~masked], vectors[~masked]
            if len(ids):
                self._index.add_with_ids(vectors, ids)
            self.dirty = True

    def _holds(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each id has a vector in the FAISS index, masked or not."""
        return np.isin(ids, faiss.vector_to_array(self._index.id_map).astype(np.int64))

    def remove(self, ids: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        with self._lock.write():
            if self.meta.kind == "flat":
                self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
            else:
                self._removed.update(int(i) for i in ids)
            self.dirty = True

    def search(
        self, queries: NDArray[np.float32], k: int, allowed: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k inner products and ids per query; -1 ids pad rows with fewer than k results.

        `allowed` restricts the search to those ids (a label filter, say).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.meta.dim)
        with self._lock.read():
            selector = self._selector(allowed)
            params: Any
            if self.meta.kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
                if selector is not None:
                    params.sel = selector
            else:
                params = faiss.SearchParameters(sel=selector) if selector is not None else None
            k = max(1, min(k, int(self._index.ntotal)))
            with _single_threaded(len(queries) < _PARALLEL_QUERIES):
                scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def vectors_of(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """The stored vectors of `ids`, in that order.

        Raises:
            KeyError: an id is not in the index.
        """
        with self._lock.read():
            try:
                return np.stack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32, copy=False)
            except RuntimeError as exc:
                raise KeyError(f"not in the index: {ids[:5]}") from exc

    @contextmanager
    def stored(self) -> Iterator[tuple[faiss.Index, NDArray[np.int64], NDArray[np.float32]]]:
        """Under the read lock (writers wait): the inner FAISS index, which searches by position, the id at
        each position (-1 where removed), and every stored vector by position, a view into FAISS's memory."""
        with self._lock.read():
            inner = faiss.downcast_index(self._index.index)
            storage = inner if self.meta.kind == "flat" else faiss.downcast_index(inner.storage)
            n = int(inner.ntotal)
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            if self._removed:
                ids[np.isin(ids, np.fromiter(self._removed, np.int64))] = -1
            if n:
                xb = faiss.rev_swig_ptr(storage.get_xb(), n * self.meta.dim).reshape(n, self.meta.dim)
            else:
                xb = np.empty((0, self.meta.dim), np.float32)
            yield inner, ids, xb

    def _selector(self, allowed: NDArray[np.int64] | None) -> faiss.IDSelector | None:
        if allowed is None and not self._removed:
            return None
        if allowed is None:
            removed = np.fromiter(self._removed, np.int64)
            return faiss.IDSelectorNot(faiss.IDSelectorBatch(removed))
        if self._removed:
            allowed = allowed[~np.isin(allowed, np.fromiter(self._removed, np.int64))]
        return faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))

    # --- persistence ------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file, fsync, rename over the old one, fsync the directory."""
        with self._lock.read():
            header = json.dumps(
                {
                    "model": self.meta.model,
                    "dim": self.meta.dim,
                    "kind": self.meta.kind,
                    "removed": sorted(self._removed),
                    "ef_search": self.ef_search,
                }
            ).encode()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                self._write_file(tmp, header)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)  # a full disk must not leave a partial file behind
                raise
            # Still under the read lock: an add racing with this save leaves the index dirty for the next one.
            self.dirty = False
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _write_file(self, tmp: Path, header: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(tmp, flags, file_mode()), "wb") as fh:
            fh.write(_HEADER.pack(_MAGIC, len(header)))
            fh.write(header)
            crc = zlib.crc32(header)
            failure: OSError | None = None

            def write(chunk: bytes) -> int:
                nonlocal crc, failure
                crc = zlib.crc32(chunk, crc)
                try:
                    return fh.write(chunk)
                except OSError as exc:  # FAISS would report it as a bare RuntimeError: keep the errno
                    failure = exc
                    raise

            # Streamed through a callback so a large index is never copied whole into memory.
            writer = faiss.PyCallbackIOWriter(write)
            try:
                faiss.write_index(self._index, writer)
            except RuntimeError:
                if failure is not None:
                    raise failure from None
                raise
            finally:
                del writer
            fh.write(_TRAILER.pack(_TRAILER_MAGIC, crc))
            fh.flush()
            os.fsync(fh.fileno())

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index written by `save`.

        Raises:
            IndexFileError: missing, truncated or not written by `save`.
        """
        try:
            with path.open("rb") as fh:
                magic, length = _HEADER.unpack(fh.read(_HEADER.size))
                if magic != _MAGIC:
                    raise IndexFileError(f"{path} is not an index file")
                raw_header = fh.read(length)
                crc = zlib.crc32(raw_header)
                header = json.loads(raw_header)

                def read(size: int) -> bytes:
                    nonlocal crc
                    chunk = fh.read(size)
                    crc = zlib.crc32(chunk, crc)
                    return chunk

                reader = faiss.PyCallbackIOReader(read)
                index = faiss.read_index(reader)
                del reader
                trailer_magic, stored_crc = _TRAILER.unpack(fh.read(_TRAILER.size))
                if trailer_magic != _TRAILER_MAGIC or stored_crc != crc:
                    raise IndexFileError(f"{path} is damaged: checksum mismatch")
                if fh.read(1):
                    raise IndexFileError(f"{path} has trailing bytes")
        except OSError as exc:
            raise IndexFileError(f"cannot read {path}: {exc}") from exc
        except (struct.error, ValueError, RuntimeError, KeyError, TypeError, MemoryError) as exc:
            raise IndexFileError(f"{path} is damaged: {exc}") from exc
        meta = IndexMeta(model=str(header["model"]), dim=int(header["dim"]), kind=str(header["kind"]))
        if index.d != meta.dim:
            raise IndexFileError(f"{path}: header says dim {meta.dim}, index has {index.d}")
        obj = cls.__new__(cls)
        obj.meta = meta
        obj.ef_search = int(header.get("ef_search", 128))
        obj._index = index
        obj._removed = {int(i) for i in header.get("removed", [])}
        obj._lock = ReadWriteLock()
        obj.dirty = False
        return obj
