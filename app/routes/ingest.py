"""Store uploaded images in the index."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep, SettingsDep
from app.errors import UPLOAD_ERRORS
from app.schemas import IngestedOut, IngestResponse, UploadFiles, predictions_out
from app.uploads import read_uploads

router = APIRouter(tags=["ingest"])


@router.post("/ingest", responses=UPLOAD_ERRORS)
async def ingest(
    index: IndexDep,
    settings: SettingsDep,
    form: Annotated[UploadFiles, File()],
) -> IngestResponse:
    """Store each uploaded image (idempotent by content: the same bytes again report 'exists', or 'restored'
    when they were in the trash, which they leave under the same id).

    All or nothing: if any file is not a usable image, nothing is stored and the answer is an error.
    """
    sources = await read_uploads(form.files, settings)
    # Decode, forward pass, SQLite and FAISS writes all block: in the thread pool, off the event loop.
    results = await run_in_threadpool(lambda: index.ingest(sources, strict=True))
    out: list[IngestedOut] = []
    for r in results:
        if r.status == "error" or r.id is None or r.sha256 is None:
            # strict ingest validated everything first; an error here means a file changed under us
            raise r.error or RuntimeError(f"{r.name} was not stored")
        out.append(
            IngestedOut(
                id=r.id, filename=r.name, sha256=r.sha256, status=r.status, predictions=predictions_out(r.predictions)
            )
        )
    return IngestResponse(results=out)
