"""Optional API keys with read and write scopes, checked in one place: this ASGI middleware.

Without `IMGSIM_API_KEYS` every request passes (the service is open, as on 127.0.0.1 by default). With keys,
a request must carry one: header `X-API-Key`, `Authorization: Bearer KEY`, or query parameter `api_key` (for
URLs a browser loads by itself, such as `<img src>`). Missing or unknown: 401; a read key on a route that
changes the index: 403. A few routes stay open so that probes and the web page shell work without a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware import send_error
from index.config import Scope as KeyScope

# Open even with keys: liveness and readiness probes, the web page shell and its assets, the API docs.
# The page shells (app/web) and the docs hold no data: their scripts call the API, which asks for the key.
OPEN_PATHS = frozenset(
    {"/", "/library", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
OPEN_PREFIXES = ("/static/", "/docs-assets/", "/library/")
# POST routes that only read: they run the model or search, but store nothing.
READ_ONLY_POSTS = frozenset({"/search", "/embed", "/predict", "/rank"})
API_KEY_QUERY = "api_key"


def is_open(method: str, path: str) -> bool:
    """Routes anyone may call, keys or not (GET/HEAD only)."""
    return method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


def required_scope(method: str, path: str) -> KeyScope:
    """'read' for requests that change nothing, 'write' for the rest (an unknown route counts as a write)."""
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path in READ_ONLY_POSTS):
        return "read"
    return "write"


def presented_key(headers: Mapping[str, str], query_string: str) -> str | None:
    """The key a request carries, from the header, a bearer token or the query string."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name, value in parse_qsl(query_string):
        if name == API_KEY_QUERY and value:
            return value
    return None


class ApiKeyAuth:
    """Checks every HTTP request against `keys` (key -> scope); does nothing when `keys` is empty."""

    def __init__(self, app: ASGIApp, keys: Mapping[str, KeyScope]) -> None:
        self.app = app
        self.keys = dict(keys)

    def scope_of(self, key: str | None) -> KeyScope | None:
        if key is None:
            return None
        found: KeyScope | None = None
        for known, scope in self.keys.items():  # compare with every key in constant time
            if hmac.compare_digest(known.encode(), key.encode()):
                found = scope
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS" or is_open(method, path):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        granted = self.scope_of(presented_key(headers, scope.get("query_string", b"").decode("latin-1")))
        if granted is None:
            await _deny(send, 401, "a valid API key is required (header X-API-Key or Authorization: Bearer)")
            return
        if required_scope(method, path) == "write" and granted != "write":
            await _deny(send, 403, "this API key may only read; changing the index needs a write key")
            return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, detail: str) -> None:
    challenge = [(b"www-authenticate", b'Bearer realm="imgsim"')] if status == 401 else []
    await send_error(send, status, detail, challenge)
