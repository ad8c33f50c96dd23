"""The compatibility route: the original project's `POST /upload-images/`, so that its client works unchanged.

That client posts every image of a folder as multipart parts named `files` and reads
`{"message": "You uploaded N image(s)", "predictions": {name: class}, "embeddings": {name: [floats]}}`; on an
error it reads `message`. Like the original, the route only embeds and predicts: nothing is stored (`/ingest`
stores).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import IndexDep, SettingsDep
from app.errors import UPLOAD_ERRORS
from app.schemas import UploadFiles, examples
from app.uploads import read_uploads

PATH = "/upload-images/"

router = APIRouter(tags=["compatibility"])


class UploadImagesResponse(BaseModel):
    model_config = examples(
        {
            "message": "You uploaded 1 image(s)",
            "predictions": {"cat.png": "Egyptian cat"},
            "embeddings": {"cat.png": [0.0132, -0.0041, 0.0275]},
        }
    )

    message: str = Field(description="'You uploaded N image(s)', N counting every uploaded file")
    predictions: dict[str, str] = Field(description="File name -> top-1 ImageNet class name")
    embeddings: dict[str, list[float]] = Field(description="File name -> the embedding (as `POST /embed` gives it)")


class MessageErrorOut(BaseModel):
    """Every error answer of the compatibility route: the same text under both keys."""

    message: str = Field(description="What was wrong (the key the original client reads)")
    detail: str = Field(description="The same text (the key the rest of the API uses)")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": MessageErrorOut, "description": entry["description"]} for code, entry in UPLOAD_ERRORS.items()
}


def response_keys(names: list[str]) -> list[str]:
    """One distinct key per upload: a repeated file name gets ' (2)', ' (3)', ... so no result is dropped."""
    keys: list[str] = []
    taken: set[str] = set(names)
    seen: set[str] = set()
    for name in names:
        key = name
        if name in seen:
            n = 2
            while f"{name} ({n})" in taken:
                n += 1
            key = f"{name} ({n})"
            taken.add(key)
        seen.add(name)
        keys.append(key)
    return keys


@router.post(PATH, responses=ERRORS)
async def upload_images(
    index: IndexDep, settings: SettingsDep, form: Annotated[UploadFiles, File()]
) -> UploadImagesResponse:
    """The original project's route: top-1 class and embedding of each uploaded image, keyed by file name.

    Nothing is stored. A file name sent twice keeps its name for the first file and gets ' (2)', ' (3)', ...
    for the later ones. Errors carry the same text as `message` and `detail`.
    """
    sources = await read_uploads(form.files, settings)
    # Decode and the (micro-batched) forward pass block: in the thread pool, off the event loop.
    rows = await run_in_threadpool(index.embed, sources)
    keys = response_keys([src.name for src in sources])
    return UploadImagesResponse(
        message=f"You uploaded {len(sources)} image(s)",
        predictions={
            key: preds[0].label if preds else "" for key, (_sha, _vector, preds) in zip(keys, rows, strict=True)
        },
        embeddings={key: vector.tolist() for key, (_sha, vector, _preds) in zip(keys, rows, strict=True)},
    )


def error_text(detail: Any) -> str:
    """One readable line from a `detail`: a string as it is, a list of validation errors as 'field: problem; ...'."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = [str(p) for p in err.get("loc", []) if p not in ("body", "query")]
                parts.append(f"{'.'.join(loc)}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return json.dumps(detail)


def with_message(body: bytes, status: int) -> bytes:
    """An error body as `{"message": text, "detail": text}`."""
    try:
        payload = json.loads(body)
        detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
        text = error_text(detail)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
    return json.dumps({"message": text or f"HTTP {status}", "detail": text or f"HTTP {status}"}).encode()


class MessageErrors:
    """ASGI middleware: every error answer on the compatibility route gets the original's `message` key.

    Middleware rather than exception handlers, because some errors (a declared body over the size limit, a
    405) are answered before the route runs; this reshapes them all, and leaves every other path untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != PATH.rstrip("/"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held back until the whole error body has arrived
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = with_message(b"".join(chunks), start["status"])
                headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
                headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshaping_send)
