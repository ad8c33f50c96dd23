"""Nearest-neighbour search from a stored image or an uploaded one, and exact ranking of a known set."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, File, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import UPLOAD_ERRORS, error_responses
from app.schemas import HitOut, QueryImage, QueryOut, SearchResponse
from app.uploads import upload_name
from index.config import Metric
from index.errors import InvalidArgument, UnknownReference
from index.service import ImageIndex

router = APIRouter(tags=["search"])

MAX_K = 1000
T = TypeVar("T")
MAX_RANK_IDS = 100_000
MAX_ID = 2**63 - 1

K = Annotated[int, Query(ge=1, le=MAX_K, description="Number of results")]
MetricQuery = Annotated[
    Metric,
    Query(description="cosine or dot: `score` is a similarity (higher is closer); euclidean: a distance (lower)"),
]
Label = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Keep only images whose top predictions include an ImageNet class this names: a class name "
        "or synonym, or a WordNet word above classes (`dog`, `bird`); see GET /labels",
    ),
]


@router.get("/search", responses=error_responses(404, 409, 422))
async def search_by_ref(
    index: IndexDep,
    ref: Annotated[
        str,
        Query(
            min_length=1, max_length=1024, description="Image id, SHA-256, or a unique file name", examples=["cat.png"]
        ),
    ],
    k: K = 10,
    metric: MetricQuery = "cosine",
    label: Label = None,
) -> SearchResponse:
    """The k stored images most similar to a stored one (itself left out), best first.

    `score` is the similarity for `cosine` and `dot` (higher is closer, 1 for identical images) and the
    Euclidean distance between the unit vectors for `euclidean` (lower is closer, 0 for identical images).
    `ref` is an image id, a SHA-256, or a file name naming exactly one image (404 when none, 409 when several).
    """
    # SQLite lookups and the FAISS search block: in the thread pool, off the event loop.
    info, hits = await run_in_threadpool(index.search_by_ref, ref, k, metric, label or None)
    return SearchResponse(
        query=QueryOut(id=info.id, filename=info.filename, sha256=info.sha256),
        metric=metric,
        results=[HitOut.of(h) for h in hits],
    )


def _query_or_form(name: str, query: T, form: T | None, default: T) -> T:
    """`k`, `metric` and `label` may come in the query string or as form fields beside the file (not both)."""
    if form is None:
        return query
    if query != default and query != form:
        raise InvalidArgument(f"{name} was given both in the query string and as a form field, with different values")
    return form


@router.post("/search", responses={**UPLOAD_ERRORS})
async def search_by_image(
    index: IndexDep,
    form: Annotated[QueryImage, File()],
    k: K = 10,
    metric: MetricQuery = "cosine",
    label: Label = None,
) -> SearchResponse:
    """The k stored images most similar to an uploaded image, best first; nothing is stored.

    `score` as for `GET /search`: similarity for cosine and dot, distance for euclidean. `k`, `metric` and
    `label` may be sent in the query string or as form fields beside `file`.
    """
    k = _query_or_form("k", k, form.k, 10)
    metric = _query_or_form("metric", metric, form.metric, "cosine")
    label = _query_or_form("label", label, form.label, None)
    name = upload_name(form.file.filename, 1)
    data = await form.file.read()
    # Decode, the (micro-batched) forward pass and the FAISS search block: in the thread pool.
    sha, hits = await run_in_threadpool(index.search_by_image, data, name, k, metric, label or None)
    return SearchResponse(
        query=QueryOut(id=None, filename=name, sha256=sha),
        metric=metric,
        results=[HitOut.of(h) for h in hits],
    )


class RankRequest(BaseModel):
    ref: str = Field(min_length=1, max_length=1024, description="Image id, SHA-256, or a unique file name")
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=MAX_RANK_IDS, description="Ids of the stored images to score"
    )
    metric: Metric = Field(default="cosine", description="cosine, euclidean or dot")


def _rank(index: ImageIndex, request: RankRequest) -> SearchResponse:
    info = index.resolve_ref(request.ref)
    found = index.store.get_many(list(dict.fromkeys(request.ids)))
    infos = {i: image for i, image in found.items() if image.trashed_at is None}
    missing = sorted(set(request.ids) - set(infos))
    if missing:
        raise UnknownReference(f"no images with ids {missing[:10]} (outside the trash)")
    try:
        ranked = index.rank(info.id, list(infos), request.metric)
    except KeyError as exc:  # deleted between the lookup and the ranking
        raise UnknownReference("an image was deleted while ranking") from exc
    return SearchResponse(
        query=QueryOut(id=info.id, filename=info.filename, sha256=info.sha256),
        metric=request.metric,
        results=[HitOut.from_info(infos[i], score) for i, score in ranked],
    )


@router.post("/rank", responses=error_responses(404, 409, 422))
async def rank(index: IndexDep, request: RankRequest) -> SearchResponse:
    """Exact scores of the given stored images against a stored reference, best first (the reference's own id
    may be among them). `score` as for `GET /search`."""
    # SQLite reads and the scoring block: in the thread pool.
    return await run_in_threadpool(_rank, index, request)
