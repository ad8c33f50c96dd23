"""Label words: what a label filter accepts (for autocomplete), and the labels the library holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep
from app.errors import error_responses
from app.schemas import LabelWordList, LabelWordOut, LibraryLabelList, LibraryLabelOut

router = APIRouter(prefix="/labels", tags=["labels"])


@router.get("", responses=error_responses(422))
async def label_words(
    index: IndexDep,
    prefix: Annotated[str, Query(max_length=200, description="Words starting so, or with a later word so")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> LabelWordList:
    """Words the `label` filter accepts, with how many ImageNet classes each names, alphabetical."""
    words = index.label_words(prefix, limit)
    return LabelWordList(labels=[LabelWordOut(word=w.word, classes=w.classes) for w in words])


@router.get("/library")
async def library_labels(index: IndexDep) -> LibraryLabelList:
    """The ImageNet classes among the stored images' top predictions, with how many images have each."""
    # A database read: in the thread pool.
    labels = await run_in_threadpool(index.labels_in_library)
    return LibraryLabelList(
        labels=[LibraryLabelOut(label=x.label, class_index=x.class_index, images=x.images) for x in labels]
    )
