"""The image index service: ties the embedder, the SQLite store and the FAISS index together.

SQLite is the source of truth. The FAISS file is a cache of the stored embeddings: it is written after
SQLite commits and checked against SQLite (model, dimension, the exact set of ids) on every open, so a
crash between the two writes is repaired on the next start and a search never returns an id SQLite lacks.

`ImageIndex` opens and reconciles; ingest (`index.ingest`), search (`index.search`), the trash (`index.trash`)
and rebuild (`index.rebuild`) live in their own modules, and this class hands each call to them. The vector
stores hold the live images only: an image in the trash keeps its row and bytes, and is left out of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.duplicates import DuplicateFinder, DuplicateReport, DuplicateSpace
from index.duplicates.candidates import StoredVectors
from index.duplicates.decisions import Decision, describe
from index.duplicates.verifier import PairVerifier, StoredVerdicts
from index.errors import ImageInTrash, InvalidArgument, ModelMismatch, StorageError, UnknownReference
from index.ingest import Ingestor, IngestResult, list_image_files
from index.model.allocator import release_large_buffers
from index.model.embedder import Embedder
from index.model.imaging import DecodeBudget
from index.model.registry import Prediction, imagenet_labels
from index.model.words import LabelWord, vocabulary
from index.pipeline import ImageSource, default_workers
from index.prune import prune_missing
from index.rebuild import INDEX_FILE, build_vectors, choose_index_kind
from index.search import QueryImage, Searcher, SearchHit, resolve_label
from index.storage.datadir import is_storage_error, remove_temporary_files, storage_errors
from index.storage.lock import DataDirLock
from index.storage.store import ImageFilter, ImageInfo, ImageStore
from index.storage.thumbnail_cache import ThumbnailCache
from index.trash import Trash
from index.vectors import VectorStore, close_vector_store
from index.vectors.faiss_index import IndexFileError, IndexMeta, VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LibraryLabel:
    label: str
    class_index: int
    images: int  # live images with it among their top predictions


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
    engine: str = ""
    trashed: int = 0  # images in the trash (not counted in `count`)
    trash_retention_days: int = 0


class ImageIndex:
    """A persistent, searchable collection of images in `settings.data_dir`."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        *,
        check_model: bool = True,
        lock: DataDirLock | None = None,
        decode_wait_s: float | None = None,
    ) -> None:
        """Open the index, holding the data directory's writer lock (`lock`, or one taken here). Decodes share
        one budget (`IMGSIM_DECODE_MEMORY_BYTES`); with `decode_wait_s`, a decode that waits that long for it
        gives up (`DecodeBusy`).

        Raises:
            DataDirLocked: another process writes to the data directory.
            DataDirDamaged, InvalidArgument, ModelMismatch: the data directory cannot be used.
        """
        self.settings = settings
        self.embedder = embedder or Embedder(settings)
        self.lock = lock or DataDirLock(settings.data_dir)
        self._owns_lock = lock is None
        try:
            remove_temporary_files(settings.data_dir)
            self.store = ImageStore(settings.data_dir, settings.database_url, settings.blob_url)
            release_large_buffers()  # or the budget would not bound what stays resident
            self.decode_budget = DecodeBudget.from_settings(settings, wait_s=decode_wait_s)
            self.thumbnails = ThumbnailCache(
                settings.data_dir, max_pixels=settings.max_image_pixels, budget=self.decode_budget
            )
        except BaseException:
            self._release_lock()
            raise
        self.index_path = settings.data_dir / INDEX_FILE
        self._write_lock = threading.Lock()
        self.workers = settings.decode_workers or default_workers()
        try:
            if check_model:
                self._check_model()
            self.vectors = self._open_vectors()
            self.trash = Trash(self.store, self.vectors, self.thumbnails, self._write_lock)
            self._purge_expired()
            self.ingestor = Ingestor(
                settings,
                self.embedder,
                self.store,
                self.vectors,
                self._write_lock,
                self.workers,
                self.trash,
                self.decode_budget,
            )
            space = DuplicateSpace.of(self.embedder.embedding, self.vectors.meta.dim, self.embedder.spec.num_classes)
            self.verifier = PairVerifier(
                self.store.read_blob,
                StoredVerdicts(self.store),
                workers=self.workers,
                max_pixels=settings.max_image_pixels,
                budget=self.decode_budget,
            )
            self.searcher = Searcher(self.store, self.vectors, self.ingestor.embed, space, self.verifier)
            # The vector store is FAISS (searched in-process) or Milvus (asked itself, `ServerVectors`).
            vectors = cast(StoredVectors, self.vectors)
            self._duplicates = DuplicateFinder(self.store, vectors, space, self.verifier)
        except BaseException:
            self.store.close()
            self._release_lock()
            raise

    @property
    def duplicates(self) -> DuplicateFinder:
        """The duplicate finder over the vector store: FAISS's own search, or a Milvus server's (no copy of the
        stored vectors; see docs/near-duplicates.md)."""
        return self._duplicates

    def _release_lock(self) -> None:
        if self._owns_lock:
            self.lock.release()

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

    def _open_vectors(self) -> VectorStore:
        """The configured vector store, in line with the store: the FAISS file (rebuilt when it cannot be
        trusted), or the Milvus collection `IMGSIM_VECTOR_STORE=milvus` names."""
        model, dim = self.model_version, self.dim
        if self.settings.vector_store == "milvus":
            from index.vectors.milvus import open_milvus

            return open_milvus(self.settings, self.store, IndexMeta(model=model, dim=dim, kind="milvus"))
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
            try:
                vectors.save(self.index_path)
            except OSError as exc:
                if not is_storage_error(exc):
                    raise
                # SQLite holds every image: serve from memory and save later, when there is room again.
                log.warning("cannot save the vector index now (%s); serving from SQLite, saving later", exc)

    def _purge_expired(self) -> None:
        """Delete for good what has been in the trash longer than `IMGSIM_TRASH_RETENTION_DAYS` (0: keep)."""
        days = self.settings.trash_retention_days
        if not days:
            return
        try:
            purged = self.trash.purge_older_than(days)
        except StorageError as exc:  # the disk is full: serve anyway, the next start tries again
            log.warning("%s; the trash is emptied at a later start", exc)
            return
        if purged:
            log.info("deleted for good %d images that were in the trash for more than %d days", purged, days)

    def _build_vectors(self, kind: str) -> VectorIndex:
        return build_vectors(self.store, IndexMeta(model=self.model_version, dim=self.dim, kind=kind), self.settings)

    def flush(self) -> None:
        """Persist the vector index if it changed since the last save.

        Raises:
            StorageError: the disk is full or failing (the previous file stays as it was).
        """
        if self.vectors.dirty:
            with self._write_lock, storage_errors("save the vector index"):
                self.vectors.save(self.index_path)

    def close(self) -> None:
        """Save the vector index and release the store and the lock; on a full disk the save is left to the
        next start, which catches the vector index up from SQLite."""
        try:
            self.flush()
        except StorageError as exc:
            log.warning("%s; it will be caught up from SQLite at the next start", exc)
        finally:
            self.verifier.close()
            close_vector_store(self.vectors)
            self.store.close()
            self._release_lock()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingest and search (see index.ingest and index.search) ---------------------------------------

    def ingest(
        self,
        sources: Sequence[ImageSource],
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[IngestResult]:
        """Store every source not stored yet (see `Ingestor.ingest`)."""
        return self.ingestor.ingest(sources, strict=strict, progress=progress)

    def ingest_folder(self, folder: Path, progress: Callable[[int], None] | None = None) -> list[IngestResult]:
        """Ingest every image file directly in `folder`.

        Raises:
            InvalidArgument: `folder` is not a directory.
        """
        return self.ingest(ImageSource.from_paths(list_image_files(folder)), progress=progress)

    def embed(self, sources: Sequence[ImageSource]) -> list[tuple[str, NDArray[np.float32], list[Prediction]]]:
        """(sha256, embedding, predictions) per source, in order; nothing is stored."""
        return self.ingestor.embed(sources)

    def resolve_ref(self, ref: str) -> ImageInfo:
        """The stored image named by `ref` (see `Searcher.resolve_ref`)."""
        return self.searcher.resolve_ref(ref)

    def search_vector(
        self,
        query: NDArray[np.float32],
        k: int = 10,
        metric: str = "cosine",
        label: str | None = None,
        exclude: frozenset[int] = frozenset(),
        source: QueryImage | None = None,
    ) -> list[SearchHit]:
        """The k stored images nearest to `query`, best first (stored copies of `source` first)."""
        return self.searcher.search_vector(query, k, metric, label, exclude, source)

    def search_by_ref(
        self, ref: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[ImageInfo, list[SearchHit]]:
        """Nearest neighbours of a stored image, the image itself left out."""
        return self.searcher.search_by_ref(ref, k, metric, label)

    def search_by_image(
        self, data: bytes, name: str, k: int = 10, metric: str = "cosine", label: str | None = None
    ) -> tuple[str, list[SearchHit]]:
        """Nearest neighbours of an image that need not be stored (nothing is stored). Returns its sha256."""
        return self.searcher.search_by_image(data, name, k, metric, label)

    def rank(self, ref_id: int, candidate_ids: Sequence[int], metric: str = "cosine") -> list[tuple[int, float]]:
        """Exact scores of `candidate_ids` against a stored image, best first."""
        return self.searcher.rank(ref_id, candidate_ids, metric)

    # --- near-duplicates (see index.duplicates) -----------------------------------------------------------

    def duplicate_groups(
        self, level: str | None = None, threshold: float | None = None, among: Collection[int] | None = None
    ) -> DuplicateReport:
        """Groups of near-duplicates, largest first (see `DuplicateFinder.groups`)."""
        return self.duplicates.groups(level, threshold, among)

    def duplicates_of(self, image_id: int, level: str | None = None, threshold: float | None = None) -> DuplicateReport:
        """One stored image's near-duplicates (see `DuplicateFinder.of`).

        Raises:
            UnknownReference: no such image (or it is in the trash).
            InvalidArgument: an unknown level, or a threshold out of range.
        """
        self.duplicates.space.resolve(level, threshold)
        info = self.get(image_id)
        if info.trashed_at is not None:
            raise ImageInTrash(f"image {image_id} ({info.filename}) is in the trash; restore it first")
        return self.duplicates.of(image_id, level, threshold)

    def resolve_duplicates(self, keep: int, remove: Sequence[int]) -> tuple[ImageInfo, list[ImageInfo]]:
        """Keep one image of a group and move its copies to the trash (see `Trash.resolve`)."""
        return self.trash.resolve(keep, remove)

    # --- "not duplicates" decisions (see index.duplicates.decisions) ---------------------------------------

    def dismiss_duplicates(self, ids: Sequence[int]) -> Decision:
        """Record that these stored images are not duplicates of each other: no grouping pairs them again.

        Raises:
            InvalidArgument: fewer than two images, or an id given twice.
            UnknownReference: an id is not stored.
        """
        if len(set(ids)) != len(ids):
            raise InvalidArgument("an image is named twice; name each image once")
        if len(ids) < 2:
            raise InvalidArgument("name at least two images that are not duplicates of each other")
        infos = self.store.get_many(list(ids))
        missing = sorted(set(ids) - set(infos))
        if missing:
            raise UnknownReference(f"no images with ids {missing[:10]}")
        with self._write_lock, storage_errors("record the decision"):
            dismissal = self.store.add_dismissal([infos[i].sha256 for i in ids])
        return describe(self.store, [dismissal])[0]

    def dismissals(self, offset: int = 0, limit: int = 50) -> tuple[int, list[Decision]]:
        """(decisions, one page of them), the newest first.

        Raises:
            InvalidArgument: a bad page.
        """
        if offset < 0 or not 1 <= limit <= 1000:
            raise InvalidArgument("offset must be >= 0 and limit between 1 and 1000")
        return self.store.count_dismissals(), describe(self.store, self.store.dismissals(offset, limit))

    def undo_dismissal(self, dismissal_id: int) -> Decision:
        """Forget a decision: its images may be grouped again. Returns it.

        Raises:
            UnknownReference: no such decision.
        """
        with self._write_lock, storage_errors("undo the decision"):
            dismissal = self.store.delete_dismissal(dismissal_id)
        if dismissal is None:
            raise UnknownReference(f"no decision with id {dismissal_id}")
        return describe(self.store, [dismissal])[0]

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

    def thumbnail(self, image_id: int) -> tuple[ImageInfo, bytes]:
        """A small JPEG of a stored image, made once and kept (see `ThumbnailCache`). Raises: UnknownReference."""
        info = self.get(image_id)

        def still_stored() -> bool:
            # Purged while the thumbnail was being made: the purge may have removed the file before it existed.
            return bool(self.store.ids_by_sha([info.sha256]))

        try:
            return info, self.thumbnails.get(info.sha256, lambda: self.store.read_blob(info.sha256), still_stored)
        except FileNotFoundError as exc:
            raise UnknownReference(f"the bytes of image {image_id} are not kept") from exc

    def list_images(
        self,
        offset: int = 0,
        limit: int = 50,
        label: str | None = None,
        name: str | None = None,
        photo: ImageFilter | None = None,
        sort: str = "added",
    ) -> tuple[int, list[ImageInfo]]:
        """(total matching, one page) in `sort` order (added, taken, name or size; '-' before it for descending,
        the images without a date taken last either way); `label` keeps images whose top predictions include
        that ImageNet class, `name` those with a name containing it (ASCII letters in any case), `photo` those
        taken in its dates and with its camera.

        Raises:
            InvalidArgument: a bad page or sort, or a `label` that names no ImageNet class (see `resolve_label`).
        """
        if offset < 0 or not 1 <= limit <= 1000:
            raise InvalidArgument("offset must be >= 0 and limit between 1 and 1000")
        classes = resolve_label(label) if label else None
        key, descending = sort.removeprefix("-"), sort.startswith("-")
        page = self.store.list_images(offset, limit, classes, name, photo, key, descending)
        return self.store.count_images(classes, name, photo), page

    def label_words(self, prefix: str = "", limit: int = 20) -> list[LabelWord]:
        """Words a label filter accepts that start with `prefix` (or have a later word that does), with how many
        ImageNet classes each names, for autocomplete.

        Raises:
            InvalidArgument: a bad limit.
        """
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return vocabulary().starting(prefix, limit)

    def labels_in_library(self) -> list[LibraryLabel]:
        """The ImageNet classes among the live images' top predictions, the most frequent first."""
        names = imagenet_labels()
        counts = self.store.label_counts()
        return [LibraryLabel(names[c], c, n) for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

    # --- the trash (see index.trash) ---------------------------------------------------------------------

    def delete(self, image_id: int) -> ImageInfo:
        """Move an image to the trash (nothing is destroyed: `restore` brings it back, `purge` deletes it).

        Raises:
            UnknownReference: no such image (ImageInTrash: it is in the trash already).
        """
        return self.trash.move(image_id)

    def restore(self, image_id: int) -> ImageInfo:
        """Take an image out of the trash, under its id.

        Raises:
            UnknownReference: no such image (NotInTrash: it is not in the trash).
        """
        return self.trash.restore(image_id)

    def purge(self, image_id: int) -> ImageInfo:
        """Delete an image in the trash for good.

        Raises:
            UnknownReference: no such image (NotInTrash: it is not in the trash).
        """
        return self.trash.purge(image_id)

    def empty_trash(self) -> int:
        """Delete everything in the trash for good; returns how many images."""
        return self.trash.empty()

    def prune(self, dry_run: bool = False) -> list[ImageInfo]:
        """Move to the trash the images whose recorded files are all gone from disk (see `index.prune`; with
        `dry_run` nothing moves); returns them, in id order.

        Raises:
            StorageError: the disk is full or failing (the images moved until then stay in the trash).
        """
        return prune_missing(self.store, self.trash, dry_run=dry_run)

    def list_trash(self, offset: int = 0, limit: int = 50) -> tuple[int, list[ImageInfo]]:
        """(images in the trash, one page), the most recently trashed first. Raises: InvalidArgument."""
        return self.trash.list(offset, limit)

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
            engine=self.embedder.engine_name,
            trashed=self.store.count_trash(),
            trash_retention_days=self.settings.trash_retention_days,
        )
