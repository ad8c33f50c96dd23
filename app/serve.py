"""Run the API as the README and the Docker image do: `python -m app.serve [uvicorn options]`.

This is `uvicorn app.main:app` (every uvicorn option works, e.g. `--host 0.0.0.0 --port 8080`) with uvicorn's
h11 protocol replaced by `GuardedH11Protocol`, which closes a connection that has not sent a complete request
head within `IMGSIM_HEADER_TIMEOUT_S`: uvicorn itself only times out connections idle after a response, so a
client that connects and sends nothing, or a header a byte at a time, would hold its connection for ever.
A body that trickles in below `IMGSIM_MIN_BODY_RATE` is cut by the app itself (`app.middleware.SlowBodyGuard`),
so that part also holds under plain `uvicorn app.main:app`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from index.config import get_settings

APP = "app.main:app"
PROTOCOL = "app.serve:GuardedH11Protocol"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request head (from the connection's start, or
    from the end of the previous response); past it the client gets a JSON 408, or nothing if it sent nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_s = get_settings().header_timeout_s or None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_bytes = 0
        if self.head_timeout_s is not None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_bytes:
            detail = f"the request head did not arrive within {self.head_timeout_s:g} s (IMGSIM_HEADER_TIMEOUT_S)"
            body = json.dumps({"detail": detail}).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
        self.transport.close()


def main(argv: list[str] | None = None) -> None:
    """uvicorn's command line for `app.main:app`, with `GuardedH11Protocol` unless `--http` says otherwise."""
    import uvicorn.main

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--http" or a.startswith("--http=") for a in args):
        args = ["--http", PROTOCOL, *args]
    uvicorn.main.main(args=[APP, *args], prog_name="python -m app.serve")


if __name__ == "__main__":
    main()
