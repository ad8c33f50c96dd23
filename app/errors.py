"""Library errors to HTTP responses, in one place: each error class has exactly one status code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from index.errors import (
    AmbiguousReference,
    BackendUnavailable,
    ImageDecodeError,
    ImageTooLarge,
    ImgsimError,
    InvalidArgument,
    ModelMismatch,
    UnknownModel,
    UnknownReference,
    UnsupportedImageFormat,
    WeightsNotFound,
)

# Looked up along the exception's MRO, so a subclass (UnsupportedImageFormat) can differ from its parent.
STATUS_BY_ERROR: dict[type[ImgsimError], int] = {
    UnsupportedImageFormat: 415,
    ImageDecodeError: 422,
    # Too many pixels is refused before decoding, like a body that is too large: the remedy is the same
    # (send a smaller image), so it shares 413 with the body limit; `detail` says which limit was hit.
    ImageTooLarge: 413,
    InvalidArgument: 422,
    UnknownReference: 404,
    AmbiguousReference: 409,
    # Configuration problems of the server itself (they stop it at start), never the client's fault.
    ModelMismatch: 503,
    UnknownModel: 503,
    WeightsNotFound: 503,
    BackendUnavailable: 503,
}
FALLBACK_STATUS = 400


def status_for(exc: ImgsimError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return FALLBACK_STATUS


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: `detail` says what was wrong (a list of field errors for validation errors)."""

    detail: str | list[dict[str, Any]]


_DESCRIPTIONS = {
    400: "Malformed request (e.g. a multipart body that cannot be parsed)",
    404: "Unknown image or reference",
    409: "The reference names several images",
    413: "Request body too large, or the image has too many pixels",
    415: "Unsupported image format",
    422: "Invalid argument, or not a readable image",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error codes a route can answer."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


UPLOAD_ERRORS = error_responses(400, 413, 415, 422)


async def _imgsim_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImgsimError)
    return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ImgsimError, _imgsim_error)
