"""Ingest: read and hash sources, decode and embed only new content, store each batch in SQLite and FAISS.

Files unchanged since they were last read are not read again: their stat vouches for their stored hash
(see `index.storage.seen_files`). The bytes of an image in the trash restore it, under its id ('restored').

A pipeline of stages (read/hash -> decode -> embed -> write) that `index.pipeline` overlaps; this module
decides what is new, keeps results in the order of the sources, and writes under the index's one lock.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import ImgsimError, InvalidArgument
from index.model.embedder import Embedder
from index.model.imaging import DecodeBudget
from index.model.registry import Prediction
from index.pipeline import EmbeddedImage, ImageSource, ReadImage, embed_read, read_sources
from index.storage.datadir import storage_errors
from index.storage.seen_files import FileStat, rememberable
from index.storage.store import ImageStore, NewImage
from index.trash import Trash
from index.vectors import VectorStore
from index.vectors.faiss_index import VectorIndex

# Sources read, hashed and decoded per step of a large ingest (bytes of about 100 MB of typical photos).
INGEST_CHUNK = 1024
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"}
    | {".dng", ".cr2", ".cr3", ".nef", ".arw"}  # camera RAW
)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one source: added, already stored ('exists'), taken out of the trash ('restored'),
    or an error message."""

    name: str
    path: str
    status: Literal["added", "exists", "restored", "error"]
    id: int | None = None
    sha256: str | None = None
    predictions: list[Prediction] = field(default_factory=list)
    error: ImgsimError | None = None


def list_image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files directly in `folder` (by extension), sorted by name; with `recursive`, in its subfolders too.

    Raises:
        InvalidArgument: `folder` is not a directory.
    """
    if not folder.is_dir():
        raise InvalidArgument(f"images folder not found: {folder}")
    found = _walk(folder) if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _walk(folder: Path) -> Iterator[Path]:
    """Everything under `folder`, depth first with a stack of its own (Path.rglob recurses, and a folder a
    thousand levels deep exceeds Python's recursion limit). Like rglob, symlinked folders are not entered
    and folders that cannot be read are passed over."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    path = current / entry.name
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(path)
                    yield path
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            continue


def raise_first(errors: Sequence[tuple[ReadImage, ImgsimError]], read: Sequence[ReadImage]) -> None:
    """Raise the error of the earliest source that failed, naming it.

    Raises:
        ImageDecodeError, ImageTooLarge: when `errors` is not empty.
    """
    if not errors:
        return
    order = {id(item.source): pos for pos, item in enumerate(read)}
    item, exc = min(errors, key=lambda e: order.get(id(e[0].source), len(read)))
    raise type(exc)(f"{item.source.name}: {exc}") from exc


class Ingestor:
    """Adds images to a store and its vector index; one writer at a time, through `write_lock`."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: ImageStore,
        vectors: VectorStore,
        write_lock: threading.Lock,
        workers: int,
        trash: Trash,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.settings = settings
        self.decode_budget = decode_budget
        self.embedder = embedder
        self.store = store
        self.vectors = vectors
        self._write_lock = write_lock
        self.workers = workers
        self.trash = trash

    def ingest(
        self,
        sources: Sequence[ImageSource],
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[IngestResult]:
        """Store every source not stored yet; content already stored only gains the new name, and content in
        the trash is restored.

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
        stats = {s.path: FileStat.of(s.path) for s in sources if s.data is None and s.path}
        read, known = self._read(sources, stats)
        if strict:
            raise_first([(item, item.error) for item in read if item.error is not None], read)
        self._pause()
        # The stored content found is named or restored at the end: a purge meanwhile would leave this ingest
        # half done, so purges of it are refused until then (and one that came first fails this ingest before
        # anything is stored).
        with self.trash.keeping(known):
            self._pause()
            return self._store_chunk(read, known, stats, strict=strict, progress=progress)

    def _pause(self) -> None:
        """The test hook that widens the race windows (`ingest_pause_s`, 0 outside tests)."""
        if self.settings.ingest_pause_s:
            time.sleep(self.settings.ingest_pause_s)

    def _store_chunk(
        self,
        read: list[ReadImage],
        known: dict[str, int],
        stats: dict[str, FileStat | None],
        *,
        strict: bool,
        progress: Callable[[int], None] | None,
    ) -> list[IngestResult]:
        by_sha: dict[str, IngestResult] = {}  # outcome per content, for every duplicate of it
        if known:
            predictions = self.store.predictions_of(list(known.values()))
            for sha, image_id in known.items():
                by_sha[sha] = IngestResult("", "", "exists", image_id, sha, predictions.get(image_id, []))
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
            self.decode_budget,
        )
        if strict:
            # All or nothing: every image is decoded and embedded (once) before the first one is stored.
            held = list(batches)
            raise_first(errors, read)
            batches = iter(held)
        restored = set(self.trash.restore_many(list(known.values())))
        if known and not isinstance(self.vectors, VectorIndex):
            self._resend_vectors(list(known.values()))
        for sha, image_id in known.items():
            if image_id in restored:
                by_sha[sha] = dataclasses.replace(by_sha[sha], status="restored")
        for batch in batches:
            by_sha.update((r.sha256 or "", r) for r in self._store_batch(batch))
            if progress:
                progress(len(batch))
        results = self._finish_results(read, by_sha)
        self._remember_files(read, results, stats)
        return results

    def _read(
        self, sources: Sequence[ImageSource], stats: dict[str, FileStat | None]
    ) -> tuple[list[ReadImage], dict[str, int]]:
        """Every source read and hashed, except stored files unchanged since they were last read (their bytes
        are left unread: only their recorded hash is needed); and the ids of the stored content among them.
        """
        seen = self.store.seen_files(list(stats))
        vouched = {path: sha for path, (stat, sha) in seen.items() if stat == stats[path]}
        known = self.store.ids_by_sha(vouched.values())
        skip = {path: sha for path, sha in vouched.items() if sha in known}
        todo = [s for s in sources if s.path not in skip or s.data is not None]
        fresh = iter(read_sources(todo, self.workers))
        read = [
            ReadImage(s, b"", skip[s.path], vouched=True) if s.data is None and s.path in skip else next(fresh)
            for s in sources
        ]
        known.update(self.store.ids_by_sha(r.sha256 for r in read if r.error is None and r.sha256 not in known))
        return read, known

    def _remember_files(
        self, read: Sequence[ReadImage], results: Sequence[IngestResult], stats: dict[str, FileStat | None]
    ) -> None:
        """Record the stat and hash of every stored file read just now, so an unchanged one is not read again."""
        files = []
        for item, result in zip(read, results, strict=True):
            stat = stats.get(item.source.path)
            if stat is not None and not item.vouched and result.id is not None and rememberable(item.source.path, stat):
                files.append((item.source.path, stat, item.sha256))
        self.store.remember_files(files)

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
                exif=e.decoded.exif,
            )
            for e in batch
        ]
        inserted = self.store_images(new_images, [e.data for e in batch])
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

    def store_images(self, images: Sequence[NewImage], data: Sequence[bytes]) -> dict[str, tuple[int, bool]]:
        """Keep the bytes, insert the rows and add the vectors of embedded images (`data[i]` holds
        `images[i]`'s bytes); bytes written for rows that did not commit are removed again.

        Returns sha256 -> (id, added), `added` False for content that was already stored.

        Raises:
            StorageError: the disk is full or failing (nothing of the batch is kept).
        """
        fresh_blobs = [i.sha256 for i in images if not self.store.has_blob(i.sha256)]
        try:
            with storage_errors("store the images"):
                self.store.write_blobs([(i.sha256, d) for i, d in zip(images, data, strict=True)])
                # One writer at a time: the existence check and the insert happen under this lock (and inside one
                # SQLite transaction), so concurrent uploads of the same bytes create exactly one record.
                with self._write_lock:
                    if self.store.get_meta("model") is None:
                        self.store.set_meta({"model": self.embedder.version, "dim": str(self.embedder.dim)})
                    inserted = self.store.insert(images, self.embedder.version, self.embedder.weights_hash)
        except BaseException:
            self._drop_unreferenced_blobs(fresh_blobs)
            raise
        with self._write_lock:
            unique = {i.sha256: i for i in images}  # one vector per content, however many files carried it
            added = [(inserted[sha][0], i.embedding) for sha, i in unique.items() if inserted[sha][1]]
            if added:
                self.vectors.add(np.array([a[0] for a in added], np.int64), np.stack([a[1] for a in added]))
        return inserted

    def _resend_vectors(self, ids: list[int]) -> None:
        """Upsert the stored vectors of content sent again (idempotent on a vector server): an earlier ingest of it
        may have committed its row and then been refused by the server (down: that ingest answered 503), and the
        retry is what makes it searchable. Content in the trash stays out."""
        with self._write_lock:
            live = self.store.live_among(ids)
            if live:
                self.vectors.add(np.array(live, np.int64), self.store.embeddings(live, self.embedder.dim))

    def _drop_unreferenced_blobs(self, hashes: Sequence[str]) -> None:
        """After a failed insert: remove the bytes this batch wrote that no committed row refers to."""
        with self._write_lock:
            try:
                kept = self.store.ids_by_sha(hashes)
            except Exception:  # the store itself failing: leave the files rather than guess
                return
            for sha in hashes:
                if sha not in kept:
                    self.store.delete_blob(sha)

    # --- embed / classify without storing ---

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
            self.decode_budget,
        ):
            out.extend((e.decoded.sha256, e.embedding, e.predictions) for e in batch)
        raise_first(errors, read)
        return out
