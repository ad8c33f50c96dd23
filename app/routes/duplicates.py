"""Duplicate groups among the stored images, and one image's duplicates."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import DuplicateGroupOut, DuplicateImageOut, DuplicatesResponse, ImageDuplicatesResponse
from index.duplicates import LEVEL_MEANINGS

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

    Exact byte copies (one stored image under several names) count as groups too: `size` counts names.
    """
    # Vector searches, reading kept bytes to verify pairs, and SQLite reads all block: in the thread pool (the
    # answer is cached until the index changes, and verdicts are kept, so paging does not search again).
    report = await run_in_threadpool(index.duplicate_groups, level, threshold)
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
    """The stored duplicates of one image, most similar first (the image itself left out)."""
    report = await run_in_threadpool(index.duplicates_of, image_id, level, threshold)
    members = report.groups[0].members[1:] if report.groups else []
    return ImageDuplicatesResponse(
        id=image_id,
        level=report.level,
        threshold=report.threshold,
        images=[DuplicateImageOut.of_member(m) for m in members],
    )
