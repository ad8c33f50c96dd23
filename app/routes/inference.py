"""Run the model on uploaded images without storing them: embeddings and ImageNet predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query
from starlette.concurrency import run_in_threadpool

from app.deps import IndexDep, SettingsDep
from app.errors import UPLOAD_ERRORS
from app.schemas import EmbeddingOut, EmbedResponse, PredictionsOut, PredictResponse, UploadFiles, predictions_out
from app.uploads import read_uploads
from index.errors import InvalidArgument

router = APIRouter(tags=["inference"])

# A named form model, so the OpenAPI request body is `UploadFiles` rather than a generated `Body_...` name.
Files = Annotated[UploadFiles, File()]


@router.post("/embed", responses=UPLOAD_ERRORS)
async def embed(index: IndexDep, settings: SettingsDep, form: Files) -> EmbedResponse:
    """Embedding vector of each uploaded image; nothing is stored."""
    sources = await read_uploads(form.files, settings)
    # Decoding and the forward pass are CPU-bound and blocking: they run in the thread pool, where the
    # micro-batcher merges them with other requests' images, so the event loop keeps serving.
    rows = await run_in_threadpool(index.embed, sources)
    return EmbedResponse(
        model=index.embedder.version,
        dim=index.vectors.meta.dim,
        results=[
            EmbeddingOut(filename=src.name, sha256=sha, embedding=vector.tolist())
            for src, (sha, vector, _preds) in zip(sources, rows, strict=True)
        ],
    )


@router.post("/predict", responses=UPLOAD_ERRORS)
async def predict(
    index: IndexDep,
    settings: SettingsDep,
    form: Files,
    top_k: Annotated[int, Query(ge=1, le=1000, description="Predictions per image, at most the server's setting")] = 5,
) -> PredictResponse:
    """Top ImageNet classes of each uploaded image, best first; nothing is stored."""
    if top_k > settings.top_k_predictions:
        raise InvalidArgument(f"top_k must be between 1 and {settings.top_k_predictions} (IMGSIM_TOP_K_PREDICTIONS)")
    sources = await read_uploads(form.files, settings)
    # Blocking decode + forward pass (micro-batched): in the thread pool, off the event loop.
    rows = await run_in_threadpool(index.embed, sources)
    return PredictResponse(
        model=index.embedder.version,
        results=[
            PredictionsOut(filename=src.name, sha256=sha, predictions=predictions_out(preds[:top_k]))
            for src, (sha, _vector, preds) in zip(sources, rows, strict=True)
        ],
    )
