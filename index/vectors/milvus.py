"""The Milvus vector store: vectors in a Milvus collection (a server or cluster, or a local milvus-lite file).

The collection holds, per image, its id (the metadata database's), its unit vector and the class indices of
its top predictions, so a label filter runs inside Milvus as a filter expression instead of as a list of
allowed ids. Like the FAISS file, it is derived from the metadata database, which stays the source of truth:
it is reconciled against it on open, and the model and dimension it was built for are collection properties,
checked on open.

Several processes (API replicas, batch ingest workers) share one collection: every write is an idempotent
upsert or delete by id, and nothing is cached in the process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from index.config import Settings
from index.errors import BackendUnavailable
from index.storage.schema import LabelRow
from index.storage.store import ImageStore
from index.vectors.faiss_index import IndexMeta, checked_vectors

log = logging.getLogger(__name__)

# The Milvus client is an extra (it brings pandas and pyarrow): without it, choosing Milvus is one clear error.
if importlib.util.find_spec("pymilvus") is None:
    raise BackendUnavailable("IMGSIM_VECTOR_STORE=milvus needs pymilvus: pip install -r requirements-milvus.txt")

# Top predictions kept per image (settings allow up to 1000); arrays are stored at their length, not this.
MAX_CLASSES = 1024
MODEL_PROPERTY = "imgsim.model"
_ID, _VECTOR, _CLASSES = "id", "vector", "classes"
# Searches read at Session consistency: they see this process's own writes, and other processes' within the
# server's time tick (about 200 ms), without waiting for a tick as Strong does (200 to 400 ms per call on a
# standalone server). A hit whose image was deleted or trashed meanwhile is dropped against the metadata
# database, so a stale read never returns one. Milvus 2.3 returns no timestamp for a delete, so for a moment
# after one of its own deletes the process reads at Strong (counts and id lists must not show what it removed).
CONSISTENCY = "Session"
STRONG = "Strong"
_STRONG_AFTER_DELETE_S = 1.0
_BATCH = 2000


@dataclass(frozen=True)
class MilvusFeatures:
    """What the server can do, from its version: a real server's, or milvus-lite's (`local`)."""

    version: str
    local: bool
    array_index: bool  # an INVERTED index on the classes array (Milvus 2.4)
    range_search: bool  # `radius` / `range_filter` search parameters (Milvus 2.3)
    count: bool  # `count(*)` queries (Milvus 2.2.9)

    @classmethod
    def of(cls, version: str, local: bool) -> MilvusFeatures:
        """Features of a server that reports `version` ('v2.3.5-lite', '2.4.13'); milvus-lite builds only FLAT
        indexes and has no range search."""
        match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
        number = tuple(int(g or 0) for g in match.groups()) if match else (0, 0, 0)
        if local:
            return cls(version, True, array_index=False, range_search=False, count=True)
        return cls(
            version,
            False,
            array_index=number >= (2, 4, 0),
            range_search=number >= (2, 3, 0),
            count=number >= (2, 2, 9),
        )

    def missing(self) -> list[str]:
        """What this server lacks that the store would use, and what it does instead."""
        if self.local:
            return []
        out = []
        if not self.array_index:
            out.append("no index on the classes array before Milvus 2.4 (label filters scan the collection)")
        if not self.range_search:
            out.append("no range search before Milvus 2.3 (duplicates use k-NN and a threshold)")
        if not self.count:
            out.append("no count(*) before Milvus 2.2.9 (counts read every id)")
        return out


_warned: set[tuple[str, str]] = set()


class _PreIteratorTimestamps(logging.Filter):
    """Servers before 2.4 give no iterator timestamp; pymilvus warns of its (harmless) fallback on every id listing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_PreIteratorTimestamps())


def _milvus_error(uri: str, exc: Exception) -> BackendUnavailable:
    message = str(getattr(exc, "message", "") or exc).strip().splitlines()
    return BackendUnavailable(f"cannot use Milvus at {uri!r}: {message[0] if message else type(exc).__name__}")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _unavailable_on_error(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A store method whose Milvus call fails (the server stopped, restarting or unreachable) raises
    BackendUnavailable (a 503 in the API), not pymilvus's or gRPC's own exception (a 500)."""
    import grpc
    from pymilvus.exceptions import MilvusException

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (MilvusException, grpc.RpcError) as exc:
            raise _milvus_error(getattr(args[0], "uri", "?"), exc) from exc

    return call


class MilvusVectorStore:
    """A Milvus collection of unit vectors (inner product) with each image's top class indices."""

    stores_labels = True

    def __init__(self, settings: Settings, store: ImageStore, meta: IndexMeta) -> None:
        """Connect, and create the collection when it does not exist.

        Raises:
            BackendUnavailable: Milvus cannot be reached, or the collection was built for another model or dimension.
        """
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self.uri = settings.milvus_uri or str(settings.data_dir / "milvus.db")
        self.collection = settings.milvus_collection
        self.store = store
        self.meta = meta
        self.ef_search = settings.hnsw_ef_search
        self.nprobe = settings.milvus_ivf_nprobe
        self.dirty = False  # every write is durable in Milvus when it returns; nothing to save
        self.local = "://" not in self.uri
        self._deleted_at = -float("inf")  # when this process last deleted (reads are Strong just after)
        try:
            if self.local:
                Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            self.client = MilvusClient(self.uri, token=settings.milvus_token, timeout=30)
        except (MilvusException, ValueError, OSError, RuntimeError) as exc:
            raise _milvus_error(self.uri, exc) from exc
        try:
            self.features = MilvusFeatures.of(str(self.client.get_server_version()), self.local)
            if (self.uri, self.features.version) not in _warned and (missing := self.features.missing()):
                _warned.add((self.uri, self.features.version))
                log.warning("Milvus %s at %s: %s", self.features.version, self.uri, "; ".join(missing))
            if self.client.has_collection(self.collection):
                self._check(meta)
            else:
                self._create(meta, settings)
            self.client.load_collection(self.collection)
        except MilvusException as exc:
            self.client.close()
            raise _milvus_error(self.uri, exc) from exc
        except BaseException:
            self.client.close()
            raise

    # --- collection ---------------------------------------------------------------------------------------

    def _create(self, meta: IndexMeta, settings: Settings) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, DataType.INT64, is_primary=True)
        schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=meta.dim)
        schema.add_field(_CLASSES, DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_CLASSES)
        index = self.client.prepare_index_params()
        kind = settings.milvus_index
        if self.local:
            kind = "FLAT"  # milvus-lite builds only FLAT (exact) indexes
        params: dict[str, Any] = {}
        if kind == "HNSW":
            params = {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}
        elif kind.startswith("IVF_"):
            params = {"nlist": settings.milvus_ivf_nlist}
        index.add_index(_VECTOR, index_type=kind, metric_type="IP", params=params)
        # An inverted index over the classes makes `array_contains_any` a lookup rather than a scan (2.4 on).
        if self.features.array_index:
            index.add_index(_CLASSES, index_type="INVERTED")
        from pymilvus.exceptions import MilvusException

        try:
            self.client.create_collection(
                self.collection,
                schema=schema,
                index_params=index,
                consistency_level=CONSISTENCY,
                properties={MODEL_PROPERTY: meta.model},
            )
        except MilvusException:
            # Replicas starting together: another one created it first; it must then be for this model.
            if not self.client.has_collection(self.collection):
                raise
            self._check(meta)
            return
        self.meta = IndexMeta(model=meta.model, dim=meta.dim, kind=kind.lower())

    def _check(self, meta: IndexMeta) -> None:
        info = self.client.describe_collection(self.collection)
        fields = {f["name"]: f for f in info.get("fields", [])}
        vector = fields.get(_VECTOR)
        if vector is None or _CLASSES not in fields:
            raise BackendUnavailable(
                f"the Milvus collection {self.collection!r} at {self.uri!r} is not an imgsim collection"
            )
        dim = int(vector.get("params", {}).get("dim", -1))
        model = str(info.get("properties", {}).get(MODEL_PROPERTY, ""))
        if dim != meta.dim or model != meta.model:
            raise BackendUnavailable(
                f"the Milvus collection {self.collection!r} at {self.uri!r} holds {model or 'unknown'} vectors "
                f"of dimension {dim}, but the index is {meta.model} of dimension {meta.dim}; use another "
                f"IMGSIM_MILVUS_COLLECTION, or rebuild it with `rebuild-index`"
            )
        kinds = {i for i in self.client.list_indexes(self.collection, field_name=_VECTOR)}
        kind = "flat"
        for name in kinds:
            kind = str(self.client.describe_index(self.collection, name).get("index_type", "flat")).lower()
        self.meta = IndexMeta(model=meta.model, dim=meta.dim, kind=kind)

    def drop(self) -> None:
        """Remove the whole collection (before a rebuild)."""
        self.client.drop_collection(self.collection)

    # --- the VectorStore interface ------------------------------------------------------------------------

    def _consistency(self) -> str:
        return STRONG if time.monotonic() - self._deleted_at < _STRONG_AFTER_DELETE_S else CONSISTENCY

    @_unavailable_on_error
    def __len__(self) -> int:
        if not self.features.count:
            return len(self.ids())
        rows = self.client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level=self._consistency()
        )
        return int(rows[0]["count(*)"]) if rows else 0

    @_unavailable_on_error
    def ids(self, consistency: str | None = None) -> NDArray[np.int64]:
        """Every id in the collection, sorted."""
        out: list[int] = []
        iterator = self.client.query_iterator(
            self.collection,
            batch_size=_BATCH * 5,
            filter=f"{_ID} >= 0",
            output_fields=[_ID],
            consistency_level=consistency or self._consistency(),
        )
        try:
            while rows := iterator.next():
                out.extend(int(r[_ID]) for r in rows)
        finally:
            iterator.close()
        return np.sort(np.array(out, dtype=np.int64))

    @_unavailable_on_error
    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Upsert `ids` with their vectors and the classes the metadata database holds for them."""
        if len(ids) == 0:
            return
        vectors = checked_vectors(ids, vectors, self.meta.dim)
        classes = _classes_of(self.store, [int(i) for i in ids])
        for start in range(0, len(ids), _BATCH):
            rows = [
                {_ID: int(i), _VECTOR: v, _CLASSES: classes.get(int(i), [])}
                for i, v in zip(ids[start : start + _BATCH], vectors[start : start + _BATCH], strict=True)
            ]
            self.client.upsert(self.collection, rows)

    @_unavailable_on_error
    def remove(self, ids: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.collection, ids=[int(i) for i in ids[start : start + _BATCH]])
        self._deleted_at = time.monotonic()

    @_unavailable_on_error
    def search(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed: NDArray[np.int64] | None = None,
        classes: Iterable[int] | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k inner products and ids per query; -1 ids pad rows with fewer than k results.

        `classes` keeps images with any of those top classes (filtered inside Milvus); `allowed` keeps
        those ids (meant for small sets).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.meta.dim)
        filters = []
        if classes is not None:
            filters.append(f"array_contains_any({_CLASSES}, {sorted(int(c) for c in classes)})")
        if allowed is not None:
            filters.append(f"{_ID} in {[int(i) for i in allowed]}")
        return self._search(queries, k, " and ".join(filters))

    def search_classes(
        self, queries: NDArray[np.float32], k: int, classes: Iterable[int]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """`search` among images whose top predictions include any of `classes`."""
        return self.search(queries, k, classes=classes)

    @_unavailable_on_error
    def save(self, path: Path | None = None) -> None:
        """Make recent writes durable in sealed segments (Milvus persists them on its own anyway)."""
        self.client.flush(self.collection)
        self.dirty = False

    def close(self) -> None:
        self.client.close()

    # --- duplicates ---------------------------------------------------------------------------------------
    # What `index.duplicates.candidates.server_pairs` asks of the collection: stored vectors a batch at a time
    # (never all of them at once) and the server's own search within a radius.

    # Stored vectors per `get` (about 2.3 MB at 2280 dimensions): one reply stays far below gRPC's message limit.
    vectors_per_get = 256

    @property
    def uses_range_search(self) -> bool:
        """Whether `within` is a range search: a Milvus server of 2.3 or later (`MilvusFeatures`); milvus-lite
        and older servers get the k nearest."""
        return self.features.range_search

    def vectors_of(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """The stored vectors of `ids`, in that order.

        Raises:
            KeyError: an id is not in the collection.
        """
        wanted = np.asarray(ids, np.int64)
        found, vectors = self._get(wanted)
        if len(found) != len(np.unique(wanted)):
            missing = np.setdiff1d(wanted, found)
            raise KeyError(f"not in the collection: {missing[:5].tolist()}")
        order = np.argsort(found)
        return vectors[order[np.searchsorted(found[order], wanted)]]

    def stored_batches(
        self, size: int, among: NDArray[np.int64] | None = None
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """(ids, vectors) of every stored image (or of those of `among` that are stored), `size` at a time."""
        ids = self.ids() if among is None else np.unique(np.asarray(among, np.int64))
        for start in range(0, len(ids), size):
            found, vectors = self._get(ids[start : start + size])
            if len(found):
                yield found, vectors

    @_unavailable_on_error
    def within(
        self, queries: NDArray[np.float32], radius: float, k: int, allowed: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Per query, up to `k` stored vectors whose inner product with it is at least `radius`, best first (a
        range search where the server has one, else the `k` nearest: the caller drops those below), as
        `search` pads them. `allowed` keeps those ids (meant for small sets)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.meta.dim)
        # Milvus keeps radius < distance <= range_filter for IP: a hair below, so that `radius` itself is in.
        ranged = {"radius": float(radius) - 1e-6, "range_filter": 2.0} if self.uses_range_search else {}
        return self._search(queries, k, "" if allowed is None else f"{_ID} in {[int(i) for i in allowed]}", ranged)

    def _search(
        self, queries: NDArray[np.float32], k: int, filter_expr: str, extra: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The collection's top-k by inner product under `filter_expr` (with `extra` search parameters), as
        (scores, ids) padded with -inf and -1."""
        k = max(1, min(k, 16384))  # Milvus's topk limit
        params: dict[str, Any] = dict(extra or {})
        if self.meta.kind == "hnsw":
            params["ef"] = max(self.ef_search, k)
        elif self.meta.kind.startswith("ivf"):
            params["nprobe"] = self.nprobe
        results = self.client.search(
            self.collection,
            data=list(queries),
            filter=filter_expr,
            limit=k,
            search_params={"metric_type": "IP", "params": params},
            consistency_level=self._consistency(),
        )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for col, hit in enumerate(hits[:k]):
                out_ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, out_ids

    @_unavailable_on_error
    def _get(self, ids: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(ids, vectors) of those of `ids` that are stored, in no particular order."""
        found: list[int] = []
        vectors: list[Any] = []
        for start in range(0, len(ids), self.vectors_per_get):
            chunk = [int(i) for i in ids[start : start + self.vectors_per_get]]
            rows = self.client.get(
                self.collection, ids=chunk, output_fields=[_ID, _VECTOR], consistency_level=self._consistency()
            )
            found.extend(int(r[_ID]) for r in rows)
            vectors.extend(r[_VECTOR] for r in rows)
        if not found:
            return np.empty(0, np.int64), np.empty((0, self.meta.dim), np.float32)
        return np.array(found, np.int64), np.asarray(vectors, dtype=np.float32).reshape(-1, self.meta.dim)


def _classes_of(store: ImageStore, ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    with store.session() as s:
        for start in range(0, len(ids), 900):
            query = select(LabelRow.image_id, LabelRow.class_index).where(
                LabelRow.image_id.in_(ids[start : start + 900])
            )
            for image_id, class_index in s.execute(query):
                out.setdefault(int(image_id), []).append(int(class_index))
    return out


def open_milvus(settings: Settings, store: ImageStore, meta: IndexMeta) -> MilvusVectorStore:
    """The collection, reconciled with the metadata database: vectors of deleted or trashed rows removed, missing
    live ones added.

    Raises:
        BackendUnavailable: see `MilvusVectorStore`.
    """
    vectors = MilvusVectorStore(settings, store, meta)
    try:
        stored, indexed = store.ids(), vectors.ids(STRONG)  # every replica's writes so far
        extra = np.setdiff1d(indexed, stored, assume_unique=True)
        if len(extra):
            log.warning("removing %d vectors with no stored image", len(extra))
            vectors.remove(extra)
        missing = np.setdiff1d(stored, indexed, assume_unique=True)
        for start in range(0, len(missing), 10_000):
            chunk = missing[start : start + 10_000]
            # Another replica may delete some of these meanwhile (or move them to the trash): add what is still
            # stored and live.
            present = np.array(store.live_among(chunk.tolist()), dtype=np.int64)
            if len(present):
                vectors.add(present, store.embeddings(present.tolist(), meta.dim))
        if len(missing):
            log.warning("added %d stored images the Milvus collection lacked", len(missing))
    except BaseException:
        vectors.close()
        raise
    return vectors


def rebuild_milvus(settings: Settings, store: ImageStore, meta: IndexMeta) -> tuple[int, str]:
    """Drop the collection and fill a new one (for `meta`'s model and dimension) from the metadata database.

    Returns (vectors, index kind).

    Raises:
        BackendUnavailable: Milvus cannot be reached.
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    uri = settings.milvus_uri or str(settings.data_dir / "milvus.db")
    try:
        client = MilvusClient(uri, token=settings.milvus_token, timeout=30)
        try:
            if client.has_collection(settings.milvus_collection):
                client.drop_collection(settings.milvus_collection)
        finally:
            client.close()
    except MilvusException as exc:
        raise _milvus_error(uri, exc) from exc
    vectors = MilvusVectorStore(settings, store, meta)
    try:
        for ids, batch in store.iter_embeddings():
            vectors.add(ids, batch)
        vectors.save()
        return len(vectors), vectors.meta.kind
    finally:
        vectors.close()
