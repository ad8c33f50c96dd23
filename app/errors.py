"""Library errors to HTTP responses, in one place: each error class has exactly one status code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware import ResponseStarted
from index.errors import (
    AmbiguousReference,
    BackendUnavailable,
    DataDirDamaged,
    DataDirLocked,
    DecodeBudgetExceeded,
    DecodeBusy,
    ImageDecodeError,
    ImageInTrash,
    ImageInUse,
    ImageTooComplex,
    ImageTooLarge,
    ImgsimError,
    IngestConflict,
    InvalidArgument,
    ModelMismatch,
    NotInTrash,
    Overloaded,
    StorageError,
    UnknownModel,
    UnknownReference,
    UnsupportedImageFormat,
    WeightsNotFound,
)
from index.storage.datadir import is_storage_error, storage_message

# Looked up along the exception's MRO, so a subclass (UnsupportedImageFormat) can differ from its parent.
STATUS_BY_ERROR: dict[type[ImgsimError], int] = {
    UnsupportedImageFormat: 415,
    ImageDecodeError: 422,
    # Too many scans, or a decode past its time budget: the image is readable but refused, and says why.
    ImageTooComplex: 422,
    # Too many pixels is refused before decoding, like a body that is too large: the remedy is the same
    # (send a smaller image), so it shares 413 with the body limit; `detail` says which limit was hit. So
    # does an image whose decode would need more memory than the whole decode budget (`detail` gives both).
    ImageTooLarge: 413,
    DecodeBudgetExceeded: 413,
    InvalidArgument: 422,
    UnknownReference: 404,
    # In the trash where a live image is wanted, or not in it where a trashed one is: the image asked for is
    # not there, as for an unknown id; `detail` says which.
    ImageInTrash: 404,
    NotInTrash: 404,
    AmbiguousReference: 409,
    # A purge and an ingest of the same bytes at once: one of the two is refused whole, and retrying works.
    ImageInUse: 409,
    IngestConflict: 409,
    # Configuration problems of the server itself (they stop it at start), never the client's fault.
    ModelMismatch: 503,
    UnknownModel: 503,
    WeightsNotFound: 503,
    DataDirLocked: 503,
    DataDirDamaged: 503,
    # The model is busy (queue full, or the request's deadline passed), or other decodes hold the decode
    # budget: retry after `RETRY_AFTER_S`.
    Overloaded: 503,
    DecodeBusy: 503,
    # The disk is full or failing: nothing was stored, reads still work.
    StorageError: 507,
    BackendUnavailable: 503,
}
FALLBACK_STATUS = 400
RETRY_AFTER_S = 1
log = logging.getLogger("app")


def status_for(exc: ImgsimError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return FALLBACK_STATUS


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: `detail` says what was wrong (a list of field errors for validation errors)."""

    detail: str | list[dict[str, Any]] = Field(
        description="What was wrong: a sentence, or for invalid parameters a list of {loc, msg, type} entries"
    )


_DESCRIPTIONS = {
    400: "Malformed request (e.g. a multipart body that cannot be parsed)",
    404: "Unknown image, reference or decision (or, where only a live image will do, one in the trash)",
    409: "The reference names several images, or a purge met an ingest of the same image: retry",
    413: "Request body too large, or the image has too many pixels or would need too much memory to decode",
    415: "Unsupported image format",
    422: "Invalid argument, not a readable image, or one too costly to decode (scans, time)",
    503: "Not ready yet, or too busy: retry after the `Retry-After` seconds",
    507: "The disk is full or failing: nothing was stored",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error codes a route can answer."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


UPLOAD_ERRORS = error_responses(400, 413, 415, 422, 503, 507)


async def _imgsim_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImgsimError)
    status = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, Overloaded) else None
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        if isinstance(exc, Overloaded):
            metrics.rejected.inc()
        if request.url.path == "/ingest":
            metrics.ingest_errors.labels(str(status)).inc()
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ImgsimError, _imgsim_error)


class JsonServerErrors:
    """Any exception that escapes a route becomes a JSON 500 (or 507 for a full or failing disk), logged once
    with its traceback, and the connection stays open: without this, Starlette answers plain text and the
    server drops the keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = ResponseStarted(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if tracked.started:
                raise
            if is_storage_error(exc):
                status, detail = 507, storage_message(exc, f"{scope['method']} {scope['path']}")
                log.error("%s", detail)
            else:
                status, detail = 500, f"internal error ({type(exc).__name__}); see the server log"
                log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            response = JSONResponse({"detail": detail}, status_code=status)
            await response(scope, receive, send)
