"""Optional API keys with read and write scopes, checked in one place: this ASGI middleware.

Without `IMGSIM_API_KEYS` every request passes (the service is open, as on 127.0.0.1 by default). With keys,
a request must carry one in a header: `X-API-Key: KEY` or `Authorization: Bearer KEY`; or the session cookie
a browser page gets by sending its key once to `POST /session` (so that `<img src>` loads carry no key).
Missing or unknown: 401; a read key on a route that changes the index: 403. A key in the query string is
refused with 401, keys or not: URLs end up in access logs, browser history and shared links (and the access
log redacts it all the same). A few routes stay open so that probes and the web page shell work without a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware import send_error
from index.config import Scope as KeyScope

SESSION_PATH = "/session"
SESSION_COOKIE = "imgsim_session"
SESSION_MAX_AGE_S = 7 * 24 * 3600
# Open even with keys: liveness and readiness probes, the web page shell and its assets, the API docs, and
# the session's state (the page asks whether it needs a key) and its end ("forget key").
OPEN_PATHS = frozenset(
    {"/", "/library", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", SESSION_PATH}
)
OPEN_PREFIXES = ("/static/", "/docs-assets/", "/library/")
# POST routes that only read: they run the model or search, but store nothing; and trading a key for a session.
READ_ONLY_POSTS = frozenset({"/search", "/embed", "/predict", "/rank", "/duplicates/among", SESSION_PATH})
API_KEY_QUERY = "api_key"
HEADER_HINT = "send it in the header X-API-Key or Authorization: Bearer"


def is_open(method: str, path: str) -> bool:
    """Routes anyone may call, keys or not: GET/HEAD of the shell, probes and docs, and ending a session."""
    if path == SESSION_PATH:
        return method in ("GET", "HEAD", "DELETE")
    return method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


def required_scope(method: str, path: str) -> KeyScope:
    """'read' for requests that change nothing, 'write' for the rest (an unknown route counts as a write)."""
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path in READ_ONLY_POSTS):
        return "read"
    return "write"


def header_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries in `X-API-Key` or as a bearer token."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def session_cookie(headers: Mapping[str, str]) -> str | None:
    try:
        cookies = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel else None


def key_in_query(query_string: str) -> bool:
    return any(name == API_KEY_QUERY for name, _ in parse_qsl(query_string, keep_blank_values=True))


def _key_id(key: str) -> str:
    return hashlib.sha256(b"imgsim key id\0" + key.encode()).hexdigest()[:16]


class Keys:
    """The configured keys (key -> scope), compared in constant time, and the session tokens made from them.

    A token is `v1.<key id>.<expiry>.<HMAC of both, keyed by the key itself>`: stateless, so any replica
    with the same keys accepts it, and removing a key from IMGSIM_API_KEYS ends its sessions.
    """

    def __init__(self, scopes: Mapping[str, KeyScope]) -> None:
        self.scopes = dict(scopes)
        self._by_id = {_key_id(key): key for key in scopes}

    @property
    def required(self) -> bool:
        return bool(self.scopes)

    def scope_of(self, key: str | None) -> KeyScope | None:
        if key is None:
            return None
        found: KeyScope | None = None
        for known, scope in self.scopes.items():  # compare with every key in constant time
            if hmac.compare_digest(known.encode(), key.encode()):
                found = scope
        return found

    def issue(self, key: str, now: float | None = None) -> str:
        """A session token for `key` (which must be one of the keys), valid SESSION_MAX_AGE_S."""
        key_id, expires = _key_id(key), int((time.time() if now is None else now) + SESSION_MAX_AGE_S)
        return f"v1.{key_id}.{expires}.{self._signature(key, key_id, expires)}"

    def session_scope(self, token: str | None, now: float | None = None) -> KeyScope | None:
        """The scope of the key a valid, unexpired session token was made from."""
        if not token:
            return None
        version, _, rest = token.partition(".")
        key_id, _, rest = rest.partition(".")
        expires, _, signature = rest.partition(".")
        key = self._by_id.get(key_id)
        now = time.time() if now is None else now
        if version != "v1" or key is None or not expires.isdigit() or int(expires) < now:
            return None
        if not hmac.compare_digest(signature, self._signature(key, key_id, int(expires))):
            return None
        return self.scopes[key]

    @staticmethod
    def _signature(key: str, key_id: str, expires: int) -> str:
        return hmac.new(key.encode(), f"imgsim session {key_id} {expires}".encode(), hashlib.sha256).hexdigest()


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class ApiKeyAuth:
    """Checks every HTTP request against `keys`; with none configured, only refuses keys in the query string."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if key_in_query(scope.get("query_string", b"").decode("latin-1")):
            await _deny(send, 401, f"API keys are not accepted in the query string (URLs are logged); {HEADER_HINT}")
            return
        method, path = scope["method"], scope["path"]
        if not self.keys.required or method == "OPTIONS" or is_open(method, path):
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        presented = header_key(headers)
        granted = self.keys.scope_of(presented) if presented else self.keys.session_scope(session_cookie(headers))
        if granted is None:
            await _deny(send, 401, f"a valid API key is required: {HEADER_HINT}")
            return
        if required_scope(method, path) == "write" and granted != "write":
            await _deny(send, 403, "this API key may only read; changing the index needs a write key")
            return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, detail: str) -> None:
    challenge = [(b"www-authenticate", b'Bearer realm="imgsim"')] if status == 401 else []
    await send_error(send, status, detail, challenge)


class RedactKeys(logging.Filter):
    """Access-log lines with `api_key=...` in the request line show `api_key=[redacted]` instead."""

    _PATTERN = re.compile(rf"({API_KEY_QUERY}=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


REDACT_KEYS = RedactKeys()


def document_security(app: FastAPI) -> None:
    """Declare the key schemes in the OpenAPI schema, so that /docs has an Authorize button that sends them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "ApiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "A key from IMGSIM_API_KEYS (only when the server sets keys)",
            },
            "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as a bearer token"},
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                operation["security"] = [] if is_open(method.upper(), path) else [{"ApiKey": []}, {"Bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
