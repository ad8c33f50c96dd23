"""A request body limit enforced while the body streams in, before anything is buffered; and the two ASGI
pieces every middleware here shares: a JSON error answer, and knowing whether a response has started."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodySizeLimit:
    """Refuses a declared Content-Length above `max_bytes` up front, and stops reading a body (chunked or
    with a false length) as soon as more than `max_bytes` have arrived. Either way the client gets 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await send_error(send, 413, BodyTooLarge(self.max_bytes).detail)
                    return

        received = 0
        tracked = ResponseStarted(send)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the body parser: FastAPI re-raises HTTPExceptions, so this becomes a 413.
                    raise BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counting_receive, tracked)
        except BodyTooLarge as exc:
            if tracked.started:
                raise
            await send_error(send, 413, exc.detail)


class ResponseStarted:
    """An ASGI `send` that notes whether the response has started (after that, an error can no longer be
    answered with a response of its own)."""

    def __init__(self, send: Send) -> None:
        self.started = False
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def send_error(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer `{"detail": detail}` as JSON with `status`, straight from ASGI middleware."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
