"""Liveness, readiness and index statistics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep, SettingsDep
from app.lifecycle import STARTUP_RETRY_AFTER_S
from app.schemas import HealthOut, LimitsOut, ReadyOut, StatsOut
from index.service import ImageIndex

router = APIRouter(tags=["system"])


@router.get("/health")
async def health() -> HealthOut:
    """The process is alive (answers even while the model is loading)."""
    return HealthOut()


@router.get(
    "/ready",
    responses={503: {"model": ReadyOut, "description": "Still starting, or failed to start"}},
    response_model_exclude_none=True,
)
async def ready(request: Request, response: Response) -> ReadyOut:
    """The model is loaded and the index is open: requests will be served."""
    index: ImageIndex | None = request.app.state.index
    if index is None or not index.embedder.loaded:
        response.status_code = 503
        response.headers["Retry-After"] = str(STARTUP_RETRY_AFTER_S)
        failed: str | None = request.app.state.startup_error
        return ReadyOut(status="failed", detail=failed) if failed else ReadyOut(status="starting")
    return ReadyOut(status="ready", model=index.embedder.version)


@router.get("/stats")
async def stats(index: IndexDep, settings: SettingsDep) -> StatsOut:
    """Number of images, model, vector dimension, default metric, index type, request limits, and whether the
    API is open (no keys)."""
    # Reads the vector index under its lock: off the event loop.
    result = await run_in_threadpool(index.stats)
    limits = LimitsOut(
        max_upload_bytes=settings.max_upload_bytes,
        max_files_per_request=settings.max_files_per_request,
        max_image_pixels=settings.max_image_pixels,
    )
    return StatsOut.of(result, limits, "keys" if settings.api_keys else "open")
