"""The image index service: ties the embedder, the SQLite store and the FAISS index together.

SQLite is the source of truth. The FAISS file is a cache of the stored embeddings: it is written after
SQLite commits and checked against SQLite (model, dimension, the exact set of ids) on every open, so a
crash between the two writes is repaired on the next start and a search never returns an id SQLite lacks.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from index.config import Metric, Settings
from index.errors import (
    AmbiguousReference,
    ImageDecodeError,
    ImgsimError,
    InvalidArgument,
    ModelMismatch,
    UnknownReference,
)
from index.models import Embedder, Prediction, imagenet_labels
from index.pipeline import EmbeddedImage, ImageSource, ReadImage, default_workers, embed_read, read_sources
from index.store import ImageInfo, ImageStore, NewImage
from index.vectors import IndexFileError, IndexMeta, VectorIndex, scores_for_metric

log = logging.getLogger(__name__)

METRICS: tuple[Metric, ...] = ("cosine", "euclidean", "dot")
INDEX_FILE = "vectors.faiss"
# Sources read, hashed and decoded per step of a large ingest (bytes of about 100 MB of typical photos).
INGEST_CHUNK = 1024
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class IngestResult:
    """What happened to one source: added, already stored ('exists'), or an error message."""

    name: str
    path: str
    status: Literal["added", "exists", "error"]
    id: int | None = None
    sha256: str | None = None
    predictions: list[Prediction] = field(default_factory=list)
    error: ImgsimError | None = None


@dataclass(frozen=True)
class SearchHit:
    image: ImageInfo
    score: float


@dataclass(frozen=True)
class IndexStats:
    count: int
    model: str
    embedding: str
    dim: int
    metric: str
    index_type: str
    device: str
    precision: str
    data_dir: str


@dataclass(frozen=True)
class RebuildReport:
    count: int
    reembedded: int
    failed: int
    index_type: str
    model: str
    seconds: float


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder` (by extension), sorted by name.

    Raises:
        InvalidArgument: `folder` is not a directory.
    """
    if not folder.is_dir():
        raise InvalidArgument(f"images folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resolve_label(label: str) -> set[int]:
    """ImageNet class indices whose name matches `label` (case-insensitive; any synonym, or the full name).

    Raises:
        InvalidArgument: no class has that name.
    """
    wanted = label.strip().lower()
    matches = {
        i
        for i, name in enumerate(imagenet_labels())
        if wanted == name.lower() or wanted in (s.strip().lower() for s in name.split(","))
    }
    if not matches:
        raise InvalidArgument(f"no ImageNet class is called {label!r}")
    return matches


def choose_index_kind(settings: Settings, count: int) -> str:
    """The vector index kind for `count` images: the setting, or by size when it is 'auto'."""
    if settings.index_kind != "auto":
        return settings.index_kind
    return "hnsw" if count > settings.exact_search_threshold else "flat"


def build_vectors(store: ImageStore, meta: IndexMeta, settings: Settings) -> VectorIndex:
    """A vector index of every embedding in `store`."""
    vectors = VectorIndex(meta, hnsw_m=settings.hnsw_m, ef_search=settings.hnsw_ef_search)
    for ids, batch in store.iter_embeddings():
        vectors.add(ids, batch)
    return vectors


class ImageIndex:
    """A persistent, searchable collection of images in `settings.data_dir`."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, *, check_model: bool = True) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings)
        self.store = ImageStore(settings.data_dir)
        self.index_path = settings.data_dir / INDEX_FILE
        self._write_lock = threading.Lock()
        self.workers = settings.decode_workers or default_workers()
        try:
            if check_model:
                self._check_model()
            self.vectors = self._open_vectors()
        except BaseException:
            self.store.close()
            raise

    # --- opening ----------------------------------------------------------------------------------------

    def _check_model(self) -> None:
        """Refuse to mix vectors of two models or embedding definitions in one index.

        Raises:
            ModelMismatch: the store was built with another model or embedding.
        """
        built_with = self.store.get_meta("model")
        if built_with is None:
            return
        if built_with != self.embedder.version:
            raise ModelMismatch(
                f"the index in {self.settings.data_dir} was built with {built_with}, but the configured model "
                f"is {self.embedder.version}; use the same model, or run "
                f"`rebuild-index --data_dir {self.settings.data_dir} --model {self.embedder.name} "
                f"--embedding {self.embedder.embedding.name} --reembed`"
            )

    @property
    def dim(self) -> int:
        stored = self.store.get_meta("dim")
        return int(stored) if stored else self.embedder.dim

    @property
    def model_version(self) -> str:
        return self.store.get_meta("model") or self.embedder.version

    def _choose_kind(self, count: int) -> str:
        return choose_index_kind(self.settings, count)

    def _open_vectors(self) -> VectorIndex:
        """Load the FAISS file and bring it in line with SQLite; rebuild it when it cannot be trusted."""
        model, dim = self.model_version, self.dim
        try:
            vectors = VectorIndex.load(self.index_path)
            if vectors.meta.model != model or vectors.meta.dim != dim:
                log.warning("vector index was built for %s/%d; rebuilding", vectors.meta.model, vectors.meta.dim)
                vectors = self._build_vectors(self._choose_kind(self.store.count()))
        except IndexFileError as exc:
            if self.index_path.exists():
                log.warning("vector index unusable (%s); rebuilding from the store", exc)
            vectors = self._build_vectors(self._choose_kind(self.store.count()))
        vectors.ef_search = self.settings.hnsw_ef_search
        self._reconcile(vectors)
        wanted = self._choose_kind(len(vectors))
        if wanted != vectors.meta.kind:
            # Switching kinds rebuilds the whole index (minutes at a million images): never done implicitly.
            log.warning(
                "the vector index is %s but %d images call for %s; run `rebuild-index --data_dir %s` to switch",
                vectors.meta.kind,
                len(vectors),
                wanted,
                self.settings.data_dir,
            )
        return vectors

    def _reconcile(self, vectors: VectorIndex) -> None:
        stored, indexed = self.store.ids(), vectors.ids()
        missing = np.setdiff1d(stored, indexed, assume_unique=True)
        extra = np.setdiff1d(indexed, stored, assume_unique=True)
        if len(extra):
            log.warning("removing %d vectors with no stored image", len(extra))
            vectors.remove(extra)
        for start in range(0, len(missing), 10_000):
            chunk = missing[start : start + 10_000]
            vectors.add(chunk, self.store.embeddings(chunk.tolist(), vectors.meta.dim))
        if len(missing):
            log.warning("added %d stored images the vector index lacked", len(missing))
        if vectors.dirty or not self.index_path.exists():
            vectors.save(self.index_path)

    def _build_vectors(self, kind: str) -> VectorIndex:
        return build_vectors(self.store, IndexMeta(model=self.model_version, dim=self.dim, kind=kind), self.settings)

    def flush(self) -> None:
        """Persist the vector index if it changed since the last save."""
        if self.vectors.dirty:
            with self._write_lock:
                self.vectors.save(self.index_path)

    def close(self) -> None:
        self.flush()
        self.store.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingest -----------------------------------------------------------------------------------------

    def ingest(
        self,
        sources: Sequence[ImageSource],
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[IngestResult]:
        """Store every source not stored yet; content already stored only gains the new name.

        Results come in the order of `sources`. With `strict`, any unusable source raises before anything
        is stored; otherwise it becomes an 'error' result and the rest go on.

        Without `strict`, sources are taken `INGEST_CHUNK` at a time, so a whole photo library is never held
        in memory at once.

        Raises:
            ImageDecodeError, ImageTooLarge: with `strict`, the first bad source.
        """
        if strict:
            return self._ingest_chunk(sources, strict=True, progress=progress)
        results: list[IngestResult] = []
        for start in range(0, len(sources), INGEST_CHUNK):
            results.extend(self._ingest_chunk(sources[start : start + INGEST_CHUNK], strict=False, progress=progress))
        return results

    def _ingest_chunk(
        self, sources: Sequence[ImageSource], *, strict: bool, progress: Callable[[int], None] | None
    ) -> list[IngestResult]:
        read = read_sources(sources, self.workers)
        if strict:
            self._raise_first([(item, item.error) for item in read if item.error is not None], read)
        by_sha: dict[str, IngestResult] = {}  # outcome per content, for every duplicate of it
        known = self.store.ids_by_sha(r.sha256 for r in read if r.error is None)
        if known:
            infos = self.store.get_many(list(set(known.values())))
            for sha, image_id in known.items():
                preds = infos[image_id].predictions if image_id in infos else []
                by_sha[sha] = IngestResult("", "", "exists", image_id, sha, preds)
        new: dict[str, ReadImage] = {}
        for item in read:
            if item.error is None and item.sha256 not in known:
                new.setdefault(item.sha256, item)
        if progress and len(read) > len(new):
            progress(len(read) - len(new))
        errors: list[tuple[ReadImage, ImgsimError]] = []

        def failed(item: ReadImage, exc: ImgsimError) -> None:
            errors.append((item, exc))
            by_sha[item.sha256] = IngestResult("", "", "error", sha256=item.sha256, error=exc)
            if progress:
                progress(1)

        cfg = self.settings
        batches = embed_read(
            list(new.values()),
            self.embedder,
            cfg.max_image_pixels,
            cfg.batch_size,
            self.workers,
            failed,
            cfg.device_decode,
        )
        if strict:
            # All or nothing: every image is decoded and embedded (once) before the first one is stored.
            held = list(batches)
            self._raise_first(errors, read)
            batches = iter(held)
        for batch in batches:
            by_sha.update((r.sha256 or "", r) for r in self._store_batch(batch))
            if progress:
                progress(len(batch))
        return self._finish_results(read, by_sha)

    def _finish_results(self, read: Sequence[ReadImage], by_sha: dict[str, IngestResult]) -> list[IngestResult]:
        """One result per source; names of sources whose content was already stored are recorded."""
        results: list[IngestResult] = []
        names: list[tuple[int, str, str]] = []
        reported: set[str] = set()
        for item in read:
            src = item.source
            outcome = by_sha.get(item.sha256) if item.error is None else None
            if outcome is None:
                results.append(IngestResult(src.name, src.path, "error", error=item.error))
                continue
            # Only the first source of newly added content reports 'added'; its duplicates 'exists'.
            status = outcome.status if item.sha256 not in reported else "exists"
            if outcome.status == "error":
                status = "error"
            reported.add(item.sha256)
            if outcome.id is not None:
                names.append((outcome.id, src.name, src.path))
            results.append(
                IngestResult(src.name, src.path, status, outcome.id, item.sha256, outcome.predictions, outcome.error)
            )
        self.store.add_names(names)
        return results

    @staticmethod
    def _raise_first(errors: Sequence[tuple[ReadImage, ImgsimError]], read: Sequence[ReadImage]) -> None:
        """Raise the error of the earliest source that failed, naming it.

        Raises:
            ImageDecodeError, ImageTooLarge: when `errors` is not empty.
        """
        if not errors:
            return
        order = {id(item.source): pos for pos, item in enumerate(read)}
        item, exc = min(errors, key=lambda e: order.get(id(e[0].source), len(read)))
        raise type(exc)(f"{item.source.name}: {exc}") from exc

    def _store_batch(self, batch: Sequence[EmbeddedImage]) -> list[IngestResult]:
        new_images = [
            NewImage(
                sha256=e.decoded.sha256,
                byte_size=e.decoded.byte_size,
                width=e.decoded.width,
                height=e.decoded.height,
                format=e.decoded.format,
                predictions=e.predictions,
                embedding=e.embedding,
                name=e.source.name,
                path=e.source.path,
            )
            for e in batch
        ]
        self.store.write_blobs([(e.decoded.sha256, e.data) for e in batch])
        # One writer at a time: the existence check and the insert happen under this lock (and inside one
        # SQLite transaction), so concurrent uploads of the same bytes create exactly one record.
        with self._write_lock:
            if self.store.get_meta("model") is None:
                self.store.set_meta({"model": self.embedder.version, "dim": str(self.embedder.dim)})
            inserted = self.store.insert(new_images, self.embedder.version, self.embedder.weights_hash)
            added = [(inserted[e.decoded.sha256][0], e.embedding) for e in batch if inserted[e.decoded.sha256][1]]
            if added:
                self.vectors.add(np.array([a[0] for a in added], np.int64), np.stack([a[1] for a in added]))
        return [
            IngestResult(
                e.source.name,
                e.source.path,
                "added" if inserted[e.decoded.sha256][1] else "exists",
                inserted[e.decoded.sha256][0],
                e.decoded.sha256,
                e.predictions,
            )
            for e in batch
        ]

    def ingest_folder(self, folder: Path, progress: Callable[[int], None] | None = None) -> list[IngestResult]:
        """Ingest every image file directly in `folder`.

        Raises:
            InvalidArgument: `folder` is not a directory.
        """
        return self.ingest([ImageSource.from_path(p) for p in list_image_files(folder)], progress=progress)

    # --- embed / classify without storing ---------------------------------------------------------------

    def embed(self, sources: Sequence[ImageSource]) -> list[tuple[str, NDArray[np.float32], list[Prediction]]]:
        """(sha256, embedding, predictions) per source, in order; nothing is stored.

        Raises:
            ImageDecodeError, ImageTooLarge: the first source that is not a usable image.
        """
        read = read_sources(sources, self.workers)
        errors: list[tuple[ReadImage, ImgsimError]] = []
        out: list[tuple[str, NDArray[np.float32], list[Prediction]]] = []
        cfg = self.settings
        for batch in embed_read(
            read,
            self.embedder,
            cfg.max_image_pixels,
            cfg.batch_size,
            self.workers,
            lambda i, e: errors.append((i, e)),
            cfg.device_decode,
        ):
            out.extend((e.decoded.sha256, e.embedding, e.predictions) for e in batch)
        self._raise_first(errors, read)
        return out

    # --- search -----------------------------------------------------------------------------------------

    def resolve_ref(self, ref: str) -> ImageInfo:
        """The stored image named by `ref`: an id, a SHA-256, or a file name that names exactly one image.

        Raises:
            UnknownReference: nothing matches.
            AmbiguousReference: a file name matches several images.
        """
        ref = ref.strip()
        # ASCII digits only ('²'.isdigit() is true but int() refuses it), and within SQLite's 64-bit integers.
        if ref.isascii() and ref.isdigit() and int(ref) < 2**63 and (info := self.store.get(int(ref))) is not None:
            return info
        if _SHA256.match(ref.lower()) and (info := self.store.find_by_sha(ref.lower())) is not None:
            return info
        ids = self.store.ids_by_name(ref)
        if not ids:
            raise UnknownReference(f"no stored image matches {ref!r}")
        if len(ids) > 1:
            raise AmbiguousReference(f"{ref!r} names {len(ids)} different images; use an id or a SHA-256")
        info = self.store.get(ids[0])
        if info is None:
            raise UnknownReference(f"no stored image matches {ref!r}")
        return info

    def search_vector(
        self,
        query: NDArray[np.float32],
        k: int = 10,
        metric: str = "cosine",
        label: str | None = None,
        exclude: frozenset[int] = frozenset(),
    ) -> list[SearchHit]:
        """The k stored images nearest to `query`, best first.

        Raises:
            InvalidArgument: bad k, metric or label.
        """
        if metric not in METRICS:
            raise InvalidArgument(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        allowed = self.store.ids_with_labels(resolve_label(label)) if label else None
        if allowed is not None and len(allowed) == 0:
            return []
        if len(self.vectors) == 0:
            return []
        scores, ids = self.vectors.search(query.reshape(1, -1), k + len(exclude), allowed)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and i not in exclude]
        infos = self.store.get_many([i for i, _ in pairs])
        metric_scores = scores_for_metric(np.array([s for _, s in pairs], np.float32), metric)
        # Vectors whose row is gone (deleted after the search started) are dropped, never returned.
        hits = [SearchHit(infos[i], float(m)) for (i, _), m in zip(pairs, metric_scores, strict=True) if i in infos]
        return hits[:k]

    def search_by_ref(
        self, ref: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[ImageInfo, list[SearchHit]]:
        """Nearest neighbours of a stored image, the image itself left out.

        Raises:
            UnknownReference, AmbiguousReference, InvalidArgument.
        """
        info = self.resolve_ref(ref)
        query = self.store.embeddings([info.id], self.vectors.meta.dim)[0]
        return info, self.search_vector(query, k, metric, label, exclude=frozenset({info.id}))

    def search_by_image(
        self, data: bytes, name: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[str, list[SearchHit]]:
        """Nearest neighbours of an image that need not be stored (nothing is stored). Returns its sha256.

        Raises:
            ImageDecodeError, ImageTooLarge, InvalidArgument.
        """
        ((sha, vector, _preds),) = self.embed([ImageSource(name=name, data=data)])
        return sha, self.search_vector(vector, k, metric, label)

    def rank(self, ref_id: int, candidate_ids: Sequence[int], metric: str = "cosine") -> list[tuple[int, float]]:
        """Exact scores of `candidate_ids` against a stored image, best first (for ranking a known set)."""
        if metric not in METRICS:
            raise InvalidArgument(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        dim = self.vectors.meta.dim
        query = self.store.embeddings([ref_id], dim)[0]
        unique = list(dict.fromkeys(candidate_ids))
        inner = self.store.embeddings(unique, dim) @ query
        scores = scores_for_metric(inner, metric)
        order = np.argsort(scores if metric == "euclidean" else -scores, kind="stable")
        return [(unique[i], float(scores[i])) for i in order]

    # --- browse / delete --------------------------------------------------------------------------------

    def get(self, image_id: int) -> ImageInfo:
        """Raises: UnknownReference."""
        info = self.store.get(image_id)
        if info is None:
            raise UnknownReference(f"no image with id {image_id}")
        return info

    def content(self, image_id: int) -> tuple[ImageInfo, bytes]:
        """The stored original bytes. Raises: UnknownReference."""
        info = self.get(image_id)
        try:
            return info, self.store.read_blob(info.sha256)
        except FileNotFoundError as exc:
            raise UnknownReference(f"the bytes of image {image_id} are not kept") from exc

    def list_images(self, offset: int = 0, limit: int = 50) -> tuple[int, list[ImageInfo]]:
        if offset < 0 or not 1 <= limit <= 1000:
            raise InvalidArgument("offset must be >= 0 and limit between 1 and 1000")
        return self.store.count(), self.store.list_images(offset, limit)

    def delete(self, image_id: int) -> ImageInfo:
        """Remove an image from the store, its kept bytes and the vector index.

        Raises:
            UnknownReference.
        """
        with self._write_lock:
            info = self.store.delete(image_id)
            if info is None:
                raise UnknownReference(f"no image with id {image_id}")
            # SQLite has committed: even if the process dies before the next save, reopening drops the vector.
            self.vectors.remove(np.array([image_id], np.int64))
        return info

    def stats(self) -> IndexStats:
        device = str(self.embedder.device)
        dtype = str(self.embedder.dtype).removeprefix("torch.")
        return IndexStats(
            count=len(self.vectors),
            model=self.embedder.name,
            embedding=self.embedder.embedding.name,
            dim=self.vectors.meta.dim,
            metric=self.settings.metric,
            index_type=self.vectors.meta.kind,
            device=device,
            precision=dtype,
            data_dir=str(self.settings.data_dir),
        )


# --- rebuild --------------------------------------------------------------------------------------------


def rebuild_index(
    settings: Settings,
    *,
    reembed: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Rebuild the FAISS file from SQLite; with `reembed`, first recompute every embedding from the kept
    bytes with the configured model (all rows switch in one transaction, so a crash leaves the old ones).

    Raises:
        InvalidArgument: there is no data directory to rebuild.
        UnknownModel, WeightsNotFound: the configured model cannot be loaded.
    """
    if not settings.data_dir.is_dir():
        raise InvalidArgument(f"cannot use {settings.data_dir} as the data directory: not a directory")
    started = time.perf_counter()
    embedder = Embedder(settings)
    store = ImageStore(settings.data_dir)
    try:
        built_with = store.get_meta("model")
        reembedded = failed = 0
        if reembed or (built_with is not None and built_with != embedder.version):
            reembedded, failed = _reembed(store, embedder, settings, progress)
        # Straight from SQLite: the old FAISS file is neither read nor repaired first, only replaced.
        model = store.get_meta("model") or embedder.version
        dim = int(store.get_meta("dim") or embedder.dim)
        kind = choose_index_kind(settings, store.count())
        vectors = build_vectors(store, IndexMeta(model=model, dim=dim, kind=kind), settings)
        vectors.save(settings.data_dir / INDEX_FILE)
    finally:
        store.close()
    return RebuildReport(
        count=len(vectors),
        reembedded=reembedded,
        failed=failed,
        index_type=kind,
        model=model,
        seconds=time.perf_counter() - started,
    )


def _reembed(
    store: ImageStore, embedder: Embedder, settings: Settings, progress: Callable[[int], None] | None
) -> tuple[int, int]:
    embedder.load()
    updates: list[tuple[int, NDArray[np.float32], list[Prediction]]] = []
    failed = 0
    for rows in store.iter_rows(settings.batch_size):
        sources, ids = [], {}
        for image_id, sha in rows:
            try:
                data = store.read_blob(sha)
            except FileNotFoundError:
                log.warning("image %d: kept bytes missing, cannot re-embed", image_id)
                failed += 1
                continue
            sources.append(ImageSource(name=sha, data=data))
            ids[sha] = image_id

        def on_error(item: ReadImage, exc: ImgsimError) -> None:
            nonlocal failed
            failed += 1
            log.warning("image %s: %s", item.source.name, exc)

        read = read_sources(sources, 1)
        for batch in embed_read(
            read, embedder, settings.max_image_pixels, settings.batch_size, 1, on_error, settings.device_decode
        ):
            updates.extend((ids[e.decoded.sha256], e.embedding, e.predictions) for e in batch)
        if progress:
            progress(len(rows))
    if failed:
        raise ImageDecodeError(f"{failed} stored images could not be re-embedded; nothing was changed")
    store.update_embeddings(
        updates, embedder.version, embedder.weights_hash, meta={"model": embedder.version, "dim": str(embedder.dim)}
    )
    return len(updates), failed
