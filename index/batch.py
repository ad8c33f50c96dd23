"""Batch ingest of folders too big for one process, on a Ray cluster (Ray Data).

Stages, as in `index.ingest`: list the files (skipping paths already recorded for a live image, so a run that
stopped resumes where it was), then read + hash + decode + embed in actors that each hold the model (and skip
content whose hash is already stored), then write in batches from the driver: bytes to the blob storage, rows to
the metadata database, vectors to the vector store; content in the trash is restored. With PostgreSQL, Milvus
and shared blob storage every node reaches the same stores; with the single-machine defaults the cluster is
this machine.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import ImgsimError, InvalidArgument
from index.ingest import list_image_files
from index.model.embedder import Embedder
from index.model.exif import NO_EXIF, PhotoExif
from index.model.imaging import DecodeBudget
from index.model.registry import Prediction
from index.pipeline import ImageSource, ReadImage, embed_read, read_sources
from index.service import ImageIndex
from index.storage.schema import ImageRow, NameRow
from index.storage.store import LIVE, ImageStore, NewImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchReport:
    files: int  # image files found
    skipped: int  # paths already recorded by an earlier run
    added: int
    existing: int  # content already stored (under another path)
    failed: int
    workers: int
    seconds: float
    restored: int = 0  # content that was in the trash, taken out of it

    @property
    def images_per_second(self) -> float:
        done = self.added + self.existing + self.restored + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


def recorded_paths(store: ImageStore, paths: Iterable[str]) -> set[str]:
    """Those of `paths` an earlier run stored (as a name of a live image: a file whose image is in the trash is
    read again, and restores it)."""
    from sqlalchemy import select

    wanted = list(paths)
    found: set[str] = set()
    live = select(ImageRow.id).where(LIVE)
    with store.session() as s:
        for start in range(0, len(wanted), 900):
            own = NameRow.merged_from.is_(None) & NameRow.image_id.in_(live)
            query = select(NameRow.path).where(NameRow.path.in_(wanted[start : start + 900]), own)
            found.update(str(p) for p in s.scalars(query))
    return found


class EmbedActor:
    """A Ray actor: reads, hashes, decodes and embeds a batch of paths with a model it loads once."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.embedder = Embedder(self.settings).load()
        self.store = ImageStore(self.settings.data_dir, self.settings.database_url, self.settings.blob_url)

    def __call__(self, batch: dict[str, NDArray[Any]]) -> dict[str, Any]:
        cfg = self.settings
        sources = [ImageSource(name=Path(str(p)).name, path=str(p)) for p in batch["path"]]
        read = read_sources(sources, 1)
        stored = self.store.ids_by_sha(r.sha256 for r in read if r.error is None)
        rows: list[dict[str, Any]] = []
        errors: list[tuple[ReadImage, ImgsimError]] = []
        fresh = [r for r in read if r.error is None and r.sha256 not in stored]
        for r in read:
            if r.error is not None:
                errors.append((r, r.error))
            elif r.sha256 in stored:
                rows.append(_row(r.source, r.sha256, status="exists"))
        for embedded in embed_read(
            fresh,
            self.embedder,
            cfg.max_image_pixels,
            cfg.batch_size,
            1,
            lambda i, e: errors.append((i, e)),
            budget=DecodeBudget.from_settings(cfg),
        ):
            for e in embedded:
                rows.append(
                    _row(
                        e.source,
                        e.decoded.sha256,
                        status="new",
                        data=e.data,
                        size=(e.decoded.byte_size, e.decoded.width, e.decoded.height),
                        fmt=e.decoded.format,
                        exif=e.decoded.exif,
                        predictions=e.predictions,
                        embedding=e.embedding,
                    )
                )
        rows.extend(_row(item.source, item.sha256, status="error", error=str(exc)) for item, exc in errors)
        dim = self.embedder.dim
        return {
            "path": np.array([r["path"] for r in rows], dtype=object),
            "name": np.array([r["name"] for r in rows], dtype=object),
            "sha256": np.array([r["sha256"] for r in rows], dtype=object),
            "status": np.array([r["status"] for r in rows], dtype=object),
            "data": np.array([r["data"] for r in rows], dtype=object),
            "meta": np.array([r["meta"] for r in rows], dtype=object),
            "embedding": np.stack(
                [r["embedding"] if r["embedding"] is not None else np.zeros(dim, np.float32) for r in rows]
            )
            if rows
            else np.zeros((0, dim), np.float32),
        }


def _row(
    source: ImageSource,
    sha256: str,
    *,
    status: str,
    data: bytes = b"",
    size: tuple[int, int, int] = (0, 0, 0),
    fmt: str = "",
    exif: PhotoExif = NO_EXIF,
    predictions: list[Prediction] | None = None,
    embedding: NDArray[np.float32] | None = None,
    error: str = "",
) -> dict[str, Any]:
    meta = {
        "byte_size": size[0],
        "width": size[1],
        "height": size[2],
        "format": fmt,
        "exif": {**asdict(exif), "taken_at": exif.taken_at.isoformat() if exif.taken_at else None},
        "predictions": [[p.label, p.class_index, p.score] for p in predictions or []],
        "error": error,
    }
    return {
        "path": source.path,
        "name": source.name,
        "sha256": sha256,
        "status": status,
        "data": data,
        "meta": json.dumps(meta),
        "embedding": embedding,
    }


def _exif(raw: dict[str, Any] | None) -> PhotoExif:
    if not raw:
        return NO_EXIF
    taken = raw.get("taken_at")
    return PhotoExif(**{**raw, "taken_at": datetime.fromisoformat(taken) if taken else None})


def _write(index: ImageIndex, batch: dict[str, NDArray[Any]]) -> tuple[int, int, int, int]:
    """Store one embedded batch; returns (added, already stored, restored from the trash, failed)."""
    store = index.store
    new: list[NewImage] = []
    blobs: list[bytes] = []
    names: list[tuple[str, str, str]] = []
    failed = 0
    for i, status in enumerate(batch["status"]):
        meta = json.loads(str(batch["meta"][i]))
        sha, name, path = str(batch["sha256"][i]), str(batch["name"][i]), str(batch["path"][i])
        if status == "error":
            failed += 1
            log.warning("%s: %s", path, meta["error"])
        elif status == "exists":
            names.append((sha, name, path))
        else:
            preds = [Prediction(str(label), int(c), float(s)) for label, c, s in meta["predictions"]]
            new.append(
                NewImage(
                    sha256=sha,
                    byte_size=int(meta["byte_size"]),
                    width=int(meta["width"]),
                    height=int(meta["height"]),
                    format=str(meta["format"]),
                    predictions=preds,
                    embedding=np.asarray(batch["embedding"][i], dtype=np.float32),
                    name=name,
                    path=path,
                    exif=_exif(meta.get("exif")),
                )
            )
            blobs.append(bytes(batch["data"][i]))
    added = 0
    if new:
        inserted = index.ingestor.store_images(new, blobs)
        added = sum(inserted[img.sha256][1] for img in new)
    known = store.ids_by_sha(sha for sha, _, _ in names)
    store.add_names([(known[sha], name, path) for sha, name, path in names if sha in known])
    restored = len(index.trash.restore_many(list(known.values())))
    return added, len(new) - added + len(names) - restored, restored, failed


def batch_ingest(
    settings: Settings,
    folder: Path,
    *,
    workers: int = 1,
    batch_size: int = 64,
    recursive: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> BatchReport:
    """Ingest every image file under `folder` on Ray, `workers` model actors embedding in parallel.

    `address` joins a running Ray cluster ("auto", "ray://host:10001"); without it a local one starts (with
    `num_cpus` CPUs). Paths stored by an earlier run are not read again.

    Raises:
        InvalidArgument: `folder` is not a directory, or `workers` < 1.
        ModelMismatch, BackendUnavailable: as when opening the index.
    """
    import ray

    if workers < 1:
        raise InvalidArgument("workers must be at least 1")
    started = time.perf_counter()
    files = [str(p.resolve()) for p in list_image_files(folder, recursive)]
    embedder = Embedder(settings)
    with ImageIndex(settings, embedder) as index:
        done = recorded_paths(index.store, files)
        todo = [p for p in files if p not in done]
        added = existing = restored = failed = 0
        if todo:
            if not ray.is_initialized():
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False)
            embedder.load()  # the driver's own copy: only its version and dimension are used
            # Each actor is one CPU-bound model process; its torch threads share that process's CPUs.
            ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=max(1, len(todo) // batch_size))
            embedded = ds.map_batches(
                EmbedActor,
                fn_constructor_kwargs={"settings": settings.model_dump(mode="json")},
                batch_size=batch_size,
                batch_format="numpy",
                concurrency=workers,
                num_cpus=1,
            )
            for batch in embedded.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
                a, e, r, f = _write(index, batch)
                added, existing, restored, failed = added + a, existing + e, restored + r, failed + f
                if progress:
                    progress(a + e + r + f)
        index.flush()
    return BatchReport(
        files=len(files),
        skipped=len(files) - len(todo),
        added=added,
        existing=existing,
        failed=failed,
        workers=workers,
        seconds=time.perf_counter() - started,
        restored=restored,
    )
