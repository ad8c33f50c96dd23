"""Rebuild the vector index from SQLite, optionally re-embedding every kept image first."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from index.config import Settings
from index.errors import ImageDecodeError, ImgsimError, InvalidArgument
from index.model.embedder import Embedder
from index.model.imaging import DecodeBudget
from index.model.registry import Prediction
from index.pipeline import ImageSource, ReadImage, embed_read, read_sources
from index.storage.datadir import storage_errors
from index.storage.lock import DataDirLock
from index.storage.store import ImageStore
from index.vectors.faiss_index import IndexMeta, VectorIndex

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"


@dataclass(frozen=True)
class RebuildReport:
    count: int
    reembedded: int
    failed: int
    index_type: str
    model: str
    seconds: float


def choose_index_kind(settings: Settings, count: int) -> str:
    """The vector index kind for `count` images: the setting, or by size when it is 'auto'."""
    if settings.index_kind != "auto":
        return settings.index_kind
    return "hnsw" if count > settings.exact_search_threshold else "flat"


def build_vectors(store: ImageStore, meta: IndexMeta, settings: Settings) -> VectorIndex:
    """A vector index of every embedding in `store`."""
    vectors = VectorIndex(
        meta,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
        ef_construction=settings.hnsw_ef_construction,
    )
    for ids, batch in store.iter_embeddings():
        vectors.add(ids, batch)
    return vectors


def rebuild_index(
    settings: Settings,
    *,
    reembed: bool = False,
    progress: Callable[[int], None] | None = None,
    on_count: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Rebuild the FAISS file from SQLite; with `reembed`, first recompute every embedding from the kept
    bytes with the configured model (all rows switch in one transaction, so a crash leaves the old ones).
    `on_count` is told how many images are re-embedded before it starts; `progress`, each batch done.

    Raises:
        InvalidArgument: there is no data directory to rebuild.
        DataDirLocked: another process writes to it.
        UnknownModel, WeightsNotFound: the configured model cannot be loaded.
    """
    if not settings.data_dir.is_dir():
        raise InvalidArgument(f"cannot use {settings.data_dir} as the data directory: not a directory")
    started = time.perf_counter()
    embedder = Embedder(settings)
    lock = DataDirLock(settings.data_dir, role="rebuild-index")
    try:
        store = ImageStore(settings.data_dir, settings.database_url, settings.blob_url)
    except BaseException:
        lock.release()
        raise
    try:
        built_with = store.get_meta("model")
        reembedded = failed = 0
        if reembed or (built_with is not None and built_with != embedder.version):
            embedder.load()  # first, so that a one-off preparation is said before the bar starts
            if on_count:
                on_count(store.count())
            reembedded, failed = _reembed(store, embedder, settings, progress)
        # Straight from SQLite: the old FAISS file is neither read nor repaired first, only replaced.
        model = store.get_meta("model") or embedder.version
        dim = int(store.get_meta("dim") or embedder.dim)
        if settings.vector_store == "milvus":
            from index.vectors.milvus import rebuild_milvus

            count, kind = rebuild_milvus(settings, store, IndexMeta(model=model, dim=dim, kind="milvus"))
        else:
            kind = choose_index_kind(settings, store.count())
            vectors = build_vectors(store, IndexMeta(model=model, dim=dim, kind=kind), settings)
            with storage_errors("save the vector index"):
                vectors.save(settings.data_dir / INDEX_FILE)
            count = len(vectors)
    finally:
        store.close()
        lock.release()
    return RebuildReport(
        count=count,
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
            read,
            embedder,
            settings.max_image_pixels,
            settings.batch_size,
            1,
            on_error,
            settings.device_decode,
            DecodeBudget.from_settings(settings),
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
