"""A request body limit enforced while the body streams in, before anything is buffered; a minimum rate for
the body; and the two ASGI pieces every middleware here shares: a JSON error answer, and knowing whether a
response has started."""

from __future__ import annotations

import asyncio
import json
import time
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


class BodyTooSlow(HTTPException):
    def __init__(self, rate: int, grace_s: float) -> None:
        super().__init__(
            408,
            f"the request body arrived slower than {rate} bytes per second after the first {grace_s:g} s "
            "(IMGSIM_MIN_BODY_RATE); the connection is closed",
        )


class SlowBodyGuard:
    """Cuts a request body that trickles in: after `grace_s` of waiting for it, the body must keep arriving at
    `min_rate` bytes per second on average (only the time spent waiting for the client counts), or the client
    gets 408 and the connection is closed. One such client would otherwise hold its connection, and the
    request's task, for as long as it pleases."""

    def __init__(self, app: ASGIApp, min_rate: int, grace_s: float) -> None:
        self.app = app
        self.min_rate = min_rate
        self.grace_s = grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.min_rate:
            await self.app(scope, receive, send)
            return
        received, waited, complete = 0, 0.0, False
        tracked = ResponseStarted(send)

        async def guarded_receive() -> Message:
            nonlocal received, waited, complete
            if complete:  # after the body only a disconnect can come, whenever it comes
                return await receive()
            allowed = self.grace_s + received / self.min_rate - waited
            started = time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(allowed, 0.001))
            except TimeoutError:
                raise BodyTooSlow(self.min_rate, self.grace_s) from None
            waited += time.monotonic() - started
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, guarded_receive, tracked)
        except BodyTooSlow as exc:
            if tracked.started:
                raise
            await send_error(send, 408, exc.detail, [(b"connection", b"close")])


class NoSniff:
    """Every response says `X-Content-Type-Options: nosniff`: a browser takes each body as the type it is
    served with (a stored image as an image, never as a page it guessed from the bytes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_with_header)


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
