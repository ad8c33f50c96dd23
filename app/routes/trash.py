"""The trash: images deleted from the library, kept until restored or deleted for good."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import EmptyTrashOut, ImageOut, TrashList

router = APIRouter(prefix="/trash", tags=["trash"])

ImageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Image id")]


@router.get("", responses=error_responses(422))
async def list_trash(
    index: IndexDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> TrashList:
    """Images in the trash, the most recently trashed first, a page at a time (as `GET /images` pages)."""
    # SQLite reads block: in the thread pool.
    total, items = await run_in_threadpool(index.list_trash, offset, limit)
    return TrashList(total=total, offset=offset, limit=limit, items=[ImageOut.of(i) for i in items])


@router.post("/{image_id}/restore", responses=error_responses(404, 422, 507))
async def restore(index: IndexDep, image_id: ImageId) -> ImageOut:
    """Take an image out of the trash, under the same id: searchable, listed and grouped again."""
    # SQLite and vector writes block: in the thread pool.
    return ImageOut.of(await run_in_threadpool(index.restore, image_id))


@router.delete("/{image_id}", responses=error_responses(404, 422, 507))
async def purge(index: IndexDep, image_id: ImageId) -> ImageOut:
    """Delete an image in the trash for good (its row, names, bytes, vector and thumbnail); answers what it was."""
    return ImageOut.of(await run_in_threadpool(index.purge, image_id))


@router.delete("", responses=error_responses(507))
async def empty(index: IndexDep) -> EmptyTrashOut:
    """Delete everything in the trash for good; answers how many images that was."""
    return EmptyTrashOut(purged=await run_in_threadpool(index.empty_trash))
