"""Stored images: list, inspect, download, delete (to the trash)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import ImageList, ImageOut, PrunedImageOut, PruneOut
from index.model.imaging import CONTENT_TYPES
from index.storage.store import ImageFilter

router = APIRouter(prefix="/images", tags=["images"])

ImageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Image id")]
# A date (its midnight) or a date and time, compared with the camera's clock (a time zone given is dropped).
TakenBound = datetime | date
SortOrder = Literal["added", "-added", "taken", "-taken", "name", "-name", "size", "-size"]


@router.get("", responses=error_responses(422))
async def list_images(
    index: IndexDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    label: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only images whose top predictions include an ImageNet class this names (a class name, "
            "synonym or WordNet word such as `dog`; see GET /labels)",
        ),
    ] = None,
    name: Annotated[
        str | None,
        Query(max_length=512, description="Only images with a name containing this (ASCII letters in any case)"),
    ] = None,
    taken_after: Annotated[
        TakenBound | None,
        Query(description="Only photos taken at or after this ISO date or date-time (EXIF, the camera's clock)"),
    ] = None,
    taken_before: Annotated[
        TakenBound | None, Query(description="Only photos taken before this ISO date or date-time (EXIF)")
    ] = None,
    camera: Annotated[
        str | None,
        Query(max_length=200, description="Only photos whose camera make and model contain this, in any case"),
    ] = None,
    sort: Annotated[
        SortOrder,
        Query(
            description="added (id order), taken (EXIF date; photos without one last), name (first name) or size "
            "(bytes); a leading '-' for descending"
        ),
    ] = "added",
) -> ImageList:
    """Stored images in id order (or `sort`), a page at a time; `total` counts those matching the filters."""
    photo = ImageFilter(taken_after, taken_before, camera or None)
    # SQLite reads block: in the thread pool.
    total, items = await run_in_threadpool(index.list_images, offset, limit, label or None, name or None, photo, sort)
    return ImageList(total=total, offset=offset, limit=limit, items=[ImageOut.of(i) for i in items])


@router.get("/lookup", responses=error_responses(404, 409, 422))
async def lookup_image(
    index: IndexDep,
    ref: Annotated[
        str,
        Query(
            min_length=1, max_length=1024, description="Image id, SHA-256, or a unique file name", examples=["cat.png"]
        ),
    ],
) -> ImageOut:
    """The stored image `ref` names, as `GET /search` resolves it (404 when none or in the trash, 409 when several)."""
    # SQLite reads block: in the thread pool.
    return ImageOut.of(await run_in_threadpool(index.resolve_ref, ref))


@router.post("/prune", responses=error_responses(422, 507))
async def prune_images(
    index: IndexDep,
    dry_run: Annotated[bool, Query(description="Only answer what would be moved; move nothing")] = False,
) -> PruneOut:
    """Move to the trash the images whose recorded files are all gone from the server's disk (never an upload)."""
    # SQLite reads, a stat per recorded file and the trash's writes block: in the thread pool.
    pruned = await run_in_threadpool(index.prune, dry_run)
    return PruneOut(dry_run=dry_run, total=len(pruned), items=[PrunedImageOut.of(i) for i in pruned])


@router.get("/{image_id}", responses=error_responses(404, 422))
async def get_image(index: IndexDep, image_id: ImageId) -> ImageOut:
    """One stored image: names, size, format and predictions (`trashed_at` set for one in the trash)."""
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


THUMBNAIL_CACHE_CONTROL = "private, max-age=86400"


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG whose longer side is at most 256 px"},
        304: {"description": "The client's copy (If-None-Match) is current"},
        **error_responses(404, 422),
    },
)
async def get_image_thumbnail(
    index: IndexDep, image_id: ImageId, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    """A small JPEG preview (longer side 256 px), made once and kept; its ETag is the content's SHA-256."""
    # SQLite, the kept file, and making a missing thumbnail all block: in the thread pool. One trip even for a
    # 304: reading a kept thumbnail (~10 KB) costs less than a second lookup.
    info, data = await run_in_threadpool(index.thumbnail, image_id)
    etag = f'"{info.sha256}-{index.thumbnails.size}"'
    headers = {"ETag": etag, "Cache-Control": THUMBNAIL_CACHE_CONTROL}
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.delete("/{image_id}", responses=error_responses(404, 422, 507))
async def delete_image(index: IndexDep, image_id: ImageId) -> ImageOut:
    """Move an image to the trash: gone from search, listings and duplicates, kept whole until restored
    (`POST /trash/{id}/restore`) or deleted for good (`DELETE /trash/{id}`). Answers it, `trashed_at` set."""
    # SQLite and vector writes block: in the thread pool.
    return ImageOut.of(await run_in_threadpool(index.delete, image_id))
