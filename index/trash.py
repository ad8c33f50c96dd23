"""The trash: deleting an image hides it instead of destroying it, until it is restored or deleted for good.

An image in the trash keeps its row, names, predictions, embedding and bytes (its thumbnail and content still
show); only the vector stores drop it, so no search, listing, count or duplicate group finds it. Restoring adds
its vector back from the stored embedding under the same id; purging deletes it for good. The metadata
database commits first every time: the vector stores are derived from its live rows and reconciled with them on
open, so a crash between the two writes is repaired at the next start.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np

from index.errors import ImageInUse, IngestConflict, InvalidArgument, UnknownReference
from index.storage.datadir import storage_errors
from index.storage.store import ImageInfo, ImageStore
from index.storage.thumbnail_cache import ThumbnailCache
from index.vectors import VectorStore

log = logging.getLogger(__name__)


class Trash:
    """Moves images to the trash and back, and purges it; one writer at a time, through `write_lock`."""

    def __init__(
        self, store: ImageStore, vectors: VectorStore, thumbnails: ThumbnailCache, write_lock: threading.Lock
    ) -> None:
        self.store = store
        self.vectors = vectors
        self.thumbnails = thumbnails
        self._write_lock = write_lock
        # Ids an ingest found stored and is about to name or restore: a purge leaves them alone meanwhile.
        self._kept: Counter[int] = Counter()

    @contextmanager
    def keeping(self, known: Mapping[str, int]) -> Iterator[None]:
        """While the block runs, no purge deletes the stored images `known` (sha256 -> id) an ingest counts on.

        Raises:
            IngestConflict: one of them was purged since it was looked up (nothing is kept for the block).
        """
        ids = list(known.values())
        if not ids:  # nothing stored found (most chunks of a new folder): nothing to hold, no lock to take
            yield
            return
        with self._write_lock:
            still = self.store.ids_by_sha(known)
            gone = sorted(i for sha, i in known.items() if still.get(sha) != i)
            if gone:
                raise IngestConflict(
                    f"image {gone[0]} was deleted for good while this ingest ran; nothing was stored: retry"
                )
            self._kept.update(ids)
        try:
            yield
        finally:
            with self._write_lock:
                self._kept.subtract(ids)
                self._kept = +self._kept

    def move(self, image_id: int) -> ImageInfo:
        """Move a live image to the trash. Returns it, with `trashed_at` set.

        Raises:
            UnknownReference: no such image (ImageInTrash: it is in the trash already).
            StorageError: the disk is full or failing (nothing changed).
        """
        with self._write_lock:
            with storage_errors(f"move image {image_id} to the trash"):
                info = self.store.move_to_trash(image_id)
            self.vectors.remove(np.array([image_id], np.int64))
        return info

    def resolve(self, keep: int, remove: Sequence[int]) -> tuple[ImageInfo, list[ImageInfo]]:
        """Keep one image of a duplicate group and move the copies `remove` to the trash, their names and
        paths recorded on the kept image. Returns (kept, trashed).

        Raises:
            InvalidArgument: no copy named, an id named twice, or the kept image among the copies.
            UnknownReference: an unknown id, or one in the trash already (nothing changed).
            StorageError: the disk is full or failing (nothing changed).
        """
        with self._write_lock:
            with storage_errors("resolve the duplicate group"):
                kept, trashed = self.store.resolve_duplicates(keep, remove)
            self.vectors.remove(np.array([t.id for t in trashed], np.int64))
        return kept, trashed

    def restore(self, image_id: int) -> ImageInfo:
        """Take an image out of the trash, under its id, into search, listings and duplicates again.

        Raises:
            UnknownReference: no such image (NotInTrash: it is not in the trash).
            StorageError: the disk is full or failing (nothing changed).
        """
        with self._write_lock:
            with storage_errors(f"restore image {image_id}"):
                info = self.store.restore(image_id)
            self._add_vectors([image_id])
        return info

    def restore_many(self, ids: Collection[int]) -> list[int]:
        """Take those of `ids` that are in the trash out of it (ingesting their bytes again); returns them."""
        if not ids or not self.store.trashed_among(ids):  # a read first: usually there is nothing to write
            return []
        with self._write_lock:
            with storage_errors("restore images from the trash"):
                restored = self.store.restore_many(ids)
            self._add_vectors(restored)
        return restored

    def _add_vectors(self, ids: Sequence[int]) -> None:
        if ids:
            self.vectors.add(np.array(ids, np.int64), self.store.embeddings(ids, self.vectors.meta.dim))

    def purge(self, image_id: int) -> ImageInfo:
        """Delete an image in the trash for good: its row, names, labels, bytes, vector and thumbnail.

        Raises:
            UnknownReference: no such image (NotInTrash: it is live; only the trash is purged).
            ImageInUse: an ingest of its bytes is restoring it right now (nothing changed).
            StorageError: the disk is full or failing.
        """
        with self._write_lock:
            if self._kept[image_id]:
                raise ImageInUse(f"image {image_id} is being ingested again right now: retry")
            with storage_errors(f"delete image {image_id}"):
                info = self.store.purge(image_id)
            # Its vector left with the move to the trash; removed again in case a crash left it behind.
            self.vectors.remove(np.array([image_id], np.int64))
            self.thumbnails.remove(info.sha256)
        return info

    def purge_all(self, ids: Sequence[int]) -> int:
        """Purge those of `ids` still in the trash (others may have been restored or purged meanwhile)."""
        purged = 0
        for image_id in ids:
            try:
                self.purge(image_id)
            except (UnknownReference, ImageInUse):  # restored or purged meanwhile, or being restored
                continue
            purged += 1
        return purged

    def empty(self) -> int:
        """Purge everything in the trash; returns how many images were deleted for good."""
        return self.purge_all(self.store.trashed_ids())

    def purge_older_than(self, days: int) -> int:
        """Purge the images trashed more than `days` days ago; returns how many."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        return self.purge_all(self.store.trashed_ids(before=cutoff))

    def list(self, offset: int = 0, limit: int = 50) -> tuple[int, list[ImageInfo]]:
        """(images in the trash, one page of them), the most recently trashed first.

        Raises:
            InvalidArgument: a bad page.
        """
        if offset < 0 or not 1 <= limit <= 1000:
            raise InvalidArgument("offset must be >= 0 and limit between 1 and 1000")
        return self.store.count_trash(), self.store.list_trash(offset, limit)
