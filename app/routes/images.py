"""Stored images: list, inspect, download, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import ImageList, ImageOut
from index.imaging import CONTENT_TYPES

router = APIRouter(prefix="/images", tags=["images"])

ImageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Image id")]


@router.get("", responses=error_responses(422))
async def list_images(
    index: IndexDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ImageList:
    """Stored images in id order, a page at a time."""
    # SQLite reads block: in the thread pool.
    total, items = await run_in_threadpool(index.list_images, offset, limit)
    return ImageList(total=total, offset=offset, limit=limit, items=[ImageOut.of(i) for i in items])


@router.get("/{image_id}", responses=error_responses(404, 422))
async def get_image(index: IndexDep, image_id: ImageId) -> ImageOut:
    """One stored image: names, size, format and predictions."""
    return ImageOut.of(await run_in_threadpool(index.get, image_id))


_IMAGE_CONTENT: dict[str, dict[str, object]] = {ct: {} for ct in sorted(set(CONTENT_TYPES.values()))}


@router.get(
    "/{image_id}/content",
    response_class=Response,
    responses={200: {"content": _IMAGE_CONTENT, "description": "The stored bytes"}, **error_responses(404, 422)},
)
async def get_image_content(index: IndexDep, image_id: ImageId) -> Response:
    """The original bytes as uploaded, with their content type."""
    # Reads the blob file: in the thread pool.
    info, data = await run_in_threadpool(index.content, image_id)
    return Response(data, media_type=CONTENT_TYPES.get(info.format, "application/octet-stream"))


@router.delete("/{image_id}", responses=error_responses(404, 422))
async def delete_image(index: IndexDep, image_id: ImageId) -> ImageOut:
    """Remove an image from the store and the vector index; answers what was removed."""
    # SQLite, blob and FAISS writes block: in the thread pool.
    return ImageOut.of(await run_in_threadpool(index.delete, image_id))
