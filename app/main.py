"""The FastAPI application: `uvicorn app.main:app --port 8080`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.errors import install_error_handlers
from app.middleware import BodySizeLimit
from app.routes import duplicates, images, inference, ingest, search, system
from index.batching import BatchingEmbedder
from index.config import Settings, get_settings
from index.service import ImageIndex

DESCRIPTION = """Image similarity search: CNN embeddings of uploaded photos in a persistent FAISS + SQLite index.

Upload images to `/ingest`, then find similar ones with `/search`. `/embed` and `/predict` run the model
without storing anything. Concurrent requests share forward passes (dynamic micro-batching).
"""


def open_index(settings: Settings) -> ImageIndex:
    """Load the model and open the store and vector index (seconds of blocking work)."""
    embedder = BatchingEmbedder(settings)
    index = ImageIndex(settings, embedder)
    embedder.load()
    return index


def close_index(index: ImageIndex) -> None:
    """Stop batching, persist the vector index, close the store."""
    if isinstance(index.embedder, BatchingEmbedder):
        index.embedder.close()
    index.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Loading weights and reading the FAISS file block for seconds: off the event loop.
    app.state.index = await run_in_threadpool(open_index, app.state.settings)
    try:
        yield
    finally:
        index, app.state.index = app.state.index, None
        await run_in_threadpool(close_index, index)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over the index in `settings.data_dir` (default: the environment's settings)."""
    settings = settings or get_settings()
    app = FastAPI(title="imgsim", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.index = None
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    for module in (system, inference, ingest, search, images, duplicates):
        app.include_router(module.router)
    return app


app = create_app()
