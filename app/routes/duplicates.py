"""Duplicate groups among the stored images, one image's duplicates, resolving a group (keep one, trash the
copies), and "not duplicates" decisions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import (
    DismissalList,
    DismissalOut,
    DismissRequest,
    DuplicateGroupOut,
    DuplicateImageOut,
    DuplicatesAmongRequest,
    DuplicatesResponse,
    ImageDuplicatesResponse,
    ImageOut,
    ResolveOut,
    ResolveRequest,
)
from index.duplicates import LEVEL_MEANINGS, DuplicateReport
from index.errors import UnknownReference
from index.service import ImageIndex

router = APIRouter(tags=["duplicates"])

Level = Annotated[
    Literal["exact", "near", "similar"] | None,
    Query(
        description="What counts as a duplicate (default near; give a level or a threshold, not both): "
        + "; ".join(f"`{name}`: {meaning}" for name, meaning in LEVEL_MEANINGS.items())
    ),
]
Threshold = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="A duplicate similarity of one's own instead of a level (similar photos, nothing verified); "
        "at least the embedding's floor (0.5 for the default), else 422",
    ),
]


def _meaning(level: str | None, threshold: float) -> str:
    return LEVEL_MEANINGS[level] if level else f"photos at least {threshold:.2f} similar (nothing verified)"


@router.get("/duplicates", responses=error_responses(422))
async def list_duplicates(
    index: IndexDep,
    level: Level = None,
    threshold: Threshold = None,
    min_size: Annotated[int, Query(ge=2, le=1_000_000, description="Smallest group size (copies)")] = 2,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DuplicatesResponse:
    """Groups of duplicate images, largest first, a page at a time; each names the image to keep and says why.

    Exact byte copies (one stored image under several names) count as groups too: `size` counts names. Images in
    the trash are left out, and no group has a kept image and a copy that a decision says are not duplicates.
    """
    # Vector searches, reading kept bytes to verify pairs, and SQLite reads all block: in the thread pool (the
    # answer is cached until the index changes, and verdicts are kept, so paging does not search again).
    report = await run_in_threadpool(index.duplicate_groups, level, threshold)
    return _page(report, min_size, offset, limit)


@router.post("/duplicates/among", responses=error_responses(404, 422))
async def duplicates_among(index: IndexDep, request: DuplicatesAmongRequest) -> DuplicatesResponse:
    """The groups of duplicates among the given stored images only (a folder's), as `GET /duplicates` answers
    them; changes nothing. An id not stored, or in the trash, is a 404."""
    # SQLite reads, vector searches and verifying pairs block: in the thread pool (cached as GET /duplicates).
    report = await run_in_threadpool(_among, index, request)
    return _page(report, request.min_size, request.offset, request.limit)


def _among(index: ImageIndex, request: DuplicatesAmongRequest) -> DuplicateReport:
    index.duplicates.space.resolve(request.level, request.threshold)  # a bad level is a 422 before any lookup
    ids = list(dict.fromkeys(request.ids))
    found = index.store.get_many(ids)
    missing = sorted(i for i in ids if i not in found or found[i].trashed_at is not None)
    if missing:
        raise UnknownReference(f"no images with ids {missing[:10]} (outside the trash)")
    return index.duplicate_groups(request.level, request.threshold, among=ids)


def _page(report: DuplicateReport, min_size: int, offset: int, limit: int) -> DuplicatesResponse:
    groups = [g for g in report.groups if g.size >= min_size]
    return DuplicatesResponse(
        total=len(groups),
        level=report.level,
        meaning=_meaning(report.level, report.threshold),
        threshold=report.threshold,
        offset=offset,
        limit=limit,
        groups=[DuplicateGroupOut.of(g) for g in groups[offset : offset + limit]],
    )


@router.get("/images/{image_id}/duplicates", responses=error_responses(404, 422))
async def image_duplicates(
    index: IndexDep,
    image_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Image id")],
    level: Level = None,
    threshold: Threshold = None,
) -> ImageDuplicatesResponse:
    """The stored duplicates of one image, most similar first (the image itself left out, and those a decision
    says are not its duplicates)."""
    report = await run_in_threadpool(index.duplicates_of, image_id, level, threshold)
    members = report.groups[0].members[1:] if report.groups else []
    return ImageDuplicatesResponse(
        id=image_id,
        level=report.level,
        threshold=report.threshold,
        images=[DuplicateImageOut.of_member(m) for m in members],
    )


@router.post("/duplicates/resolve", responses=error_responses(404, 422, 507))
async def resolve(index: IndexDep, request: ResolveRequest) -> ResolveOut:
    """Keep one image and move its copies to the trash, recording their names and paths on the kept image.

    All or nothing: an unknown id, one already in the trash (404), or `keep` among `remove` (422) changes nothing.
    """
    # SQLite and vector writes block: in the thread pool.
    kept, trashed = await run_in_threadpool(index.resolve_duplicates, request.keep, request.remove)
    return ResolveOut(kept=ImageOut.of(kept), trashed=[ImageOut.of(t) for t in trashed])


@router.post("/duplicates/dismiss", status_code=201, responses=error_responses(404, 422, 507))
async def dismiss(index: IndexDep, request: DismissRequest) -> DismissalOut:
    """Record that these images are not duplicates of each other: no grouping, at any level or threshold,
    pairs any two of them again (by content, so it holds across re-ingests, the trash and rebuilds)."""
    return DismissalOut.of(await run_in_threadpool(index.dismiss_duplicates, request.ids))


@router.get("/duplicates/dismissed", responses=error_responses(422))
async def dismissed(
    index: IndexDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DismissalList:
    """The "not duplicates" decisions, the newest first, a page at a time."""
    total, items = await run_in_threadpool(index.dismissals, offset, limit)
    return DismissalList(total=total, offset=offset, limit=limit, items=[DismissalOut.of(d) for d in items])


@router.delete("/duplicates/dismissed/{dismissal_id}", responses=error_responses(404, 422, 507))
async def undo_dismissal(
    index: IndexDep, dismissal_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Decision id")]
) -> DismissalOut:
    """Undo a decision: its images may be grouped again. Answers the decision that was undone."""
    return DismissalOut.of(await run_in_threadpool(index.undo_dismissal, dismissal_id))
