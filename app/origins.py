"""Browsers on the same machine cannot drive the API: two ASGI middlewares.

`HostAllowList` answers 400 to a request whose `Host` is not a name this server is known by. A web page on
another site can point its own name at 127.0.0.1 (DNS rebinding) and then read and write the API as if it
were same-origin; its requests still carry its own name as `Host`, so they are refused. Allowed by default:
`localhost` and `*.localhost`, any IP address (a rebinding attack needs a name), and the name the server
was reached by in the ASGI scope (the address it listens on); more with `IMGSIM_ALLOWED_HOSTS`.

`SameOriginWrites` answers 403 to a state-changing request (any method but GET, HEAD and OPTIONS) that a
browser sent from another origin: a cross-site form or `fetch` POST needs no CORS preflight, so without
this any page the user visits could ingest or delete. A browser says where a request comes from in
`Origin` (and `Sec-Fetch-Site`); allowed are this server's own origin and those in `IMGSIM_CORS_ORIGINS`.
Clients that are not browsers send neither header and are not affected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware import send_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = ("localhost", "*.localhost")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def split_host(host: str) -> tuple[str, int | None]:
    """'Example.org:8080' -> ('example.org', 8080); '[::1]' -> ('::1', None). A bad port is None."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    return name.rstrip("."), int(port) if port.isdigit() else None


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def name_matches(name: str, pattern: str) -> bool:
    """`pattern` is a host name, `*.domain` (any name under domain) or `*` (anything)."""
    pattern = pattern.strip().lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


class HostAllowList:
    """400 for a request whose Host header names none of the allowed hosts (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.patterns = (*LOCAL_NAMES, *allowed)

    def allows(self, host: str, scope: Scope) -> bool:
        name, _port = split_host(host)
        if is_ip_address(name) or any(name_matches(name, p) for p in self.patterns):
            return True
        server = scope.get("server")
        return server is not None and name == str(server[0]).lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        # HTTP/1.0 may omit Host; browsers never do, so there is nothing to check.
        if host is not None and not self.allows(host, scope):
            name = split_host(host)[0]
            await send_error(
                send,
                400,
                f"this server does not answer to the host name {name!r} (a page elsewhere may be using DNS "
                f"rebinding); to serve under that name, add it to IMGSIM_ALLOWED_HOSTS",
            )
            return
        await self.app(scope, receive, send)


def _netloc(scheme: str, name: str, port: int | None) -> tuple[str, int | None]:
    return name, None if port == _DEFAULT_PORTS.get(scheme) else port


class SameOriginWrites:
    """403 for a state-changing request a browser sent from another origin (see the module docstring)."""

    def __init__(self, app: ASGIApp, cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = {origin.strip().lower().rstrip("/") for origin in cors_origins}

    def same_origin(self, origin: str, scope: Scope) -> bool:
        parts = urlsplit(origin)
        host = _header(scope, b"host")
        if not parts.hostname or host is None:
            return False
        ours = _netloc(parts.scheme, *split_host(host))
        # Behind a TLS proxy the request arrives over http while the page's origin is https, on the default
        # port of either: a Host without a port stands for both.
        try:
            theirs = _netloc(parts.scheme, parts.hostname.lower(), parts.port)
        except ValueError:
            return False
        return theirs == ours

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        site = _header(scope, b"sec-fetch-site")
        if origin is not None:
            allowed = origin.lower().rstrip("/") in self.trusted or self.same_origin(origin, scope)
            where = f"from {origin}"
        else:
            allowed = site is None or site.lower() in ("same-origin", "none")
            where = f"from another site (Sec-Fetch-Site: {site})"
        if not allowed:
            await send_error(
                send,
                403,
                f"a browser sent this {scope['method']} request {where}, not from this server's own pages; "
                "origins allowed to change the index are listed in IMGSIM_CORS_ORIGINS",
            )
            return
        await self.app(scope, receive, send)
