"""Start and stop of the API process.

`/health` answers as soon as the process is up; the model loads and the index opens in the background, and
`/ready` (and every route that needs the index) answers 503 with `Retry-After` until then. (An app created
in-process, as tests do with `with TestClient(create_app(settings))`, waits instead: it is ready, or has
raised, when the lifespan has started.) The data directory's
writer lock is taken first, synchronously, so a second server on the same directory stops at once with one
line naming the first. While serving, a changed vector index is saved every `IMGSIM_SAVE_INTERVAL_S`; at
shutdown (uvicorn drains in-flight requests on SIGTERM first) it is saved once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from index.config import Settings
from index.errors import ImgsimError, StorageError
from index.model.batching import BatchingEmbedder
from index.service import ImageIndex
from index.storage.lock import DataDirLock

log = logging.getLogger("app")

STARTUP_RETRY_AFTER_S = 5
# A request's image waits at most this long for the decode budget before it is answered 503: waiting longer
# would hold its worker thread while the decodes ahead of it finish.
DECODE_WAIT_S = 5.0


def open_index(settings: Settings, lock: DataDirLock | None = None) -> ImageIndex:
    """Load the model and open the store and vector index (seconds of blocking work)."""
    embedder = BatchingEmbedder(settings)
    # Opening first: a data directory that cannot be used is refused before the seconds of model loading.
    index = ImageIndex(settings, embedder, lock=lock, decode_wait_s=DECODE_WAIT_S)
    try:
        embedder.load()
    except BaseException:
        close_index(index)
        raise
    return index


def close_index(index: ImageIndex) -> None:
    """Stop batching, persist the vector index (deferred to the next start on a full disk), close the store."""
    if isinstance(index.embedder, BatchingEmbedder):
        index.embedder.close()
    index.close()


def listen_address(argv: list[str] | None = None) -> tuple[str, str] | None:
    """(host, port) a `uvicorn app.main:app`, `python -m app.serve` or `imgsim serve` process listens on, from its
    command line (None when unknown, or on a Unix socket or an inherited descriptor)."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return None
    imgsim_serve = os.path.basename(argv[0]) in ("imgsim", "imgsim.py") and "serve" in argv[1:]
    if not ("uvicorn" in argv[0] or argv[0].endswith(os.path.join("app", "serve.py")) or imgsim_serve):
        return None
    options = {"--host": os.environ.get("UVICORN_HOST", "127.0.0.1"), "--port": os.environ.get("UVICORN_PORT", "8000")}
    for n, arg in enumerate(argv):
        if arg in ("--uds", "--fd"):
            return None
        name, eq, value = arg.partition("=")
        if name in options:
            options[name] = value if eq else (argv[n + 1] if n + 1 < len(argv) else options[name])
    return options["--host"], options["--port"]


def server_url(argv: list[str] | None = None) -> str | None:
    """The address a server process listens on, as a URL to reach it from this machine (None when unknown)."""
    address = listen_address(argv)
    if address is None:
        return None
    host, port = address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_network_warning(settings: Settings, argv: list[str] | None = None) -> str | None:
    """The warning for a server listening beyond this machine without API keys (None when that is not so)."""
    address = listen_address(argv)
    if settings.api_keys or address is None or is_loopback(address[0]):
        return None
    host, port = address
    rule = "!" * 100
    return (
        f"{rule}\n"
        f"WARNING: imgsim listens on {host}:{port} with no API keys: anyone who can reach this address can read,\n"
        "add and delete images. Set keys before exposing it, for example:\n"
        '    IMGSIM_API_KEYS="$(openssl rand -hex 16):write"\n'
        "and IMGSIM_REQUIRE_KEYS=true to refuse to start without them (see docs/security.md).\n"
        f"{rule}"
    )


def log_to_stderr() -> None:
    """Show the app's INFO lines (the ready line, the model's one-off preparation) as uvicorn shows its own,
    unless the process configured logging itself."""
    if logging.getLogger().handlers:
        return
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    for name in ("app", "index.model.prepare"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def startup_failed(app: FastAPI, message: str) -> None:
    """Report a start-up failure as one line; a standalone server then exits (status 1), nothing to save."""
    app.state.startup_error = message
    if app.state.standalone:
        print(f"error: {message}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(1)
    log.error("cannot start: %s", message)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImgsimError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _open_in_background(app: FastAPI, lock: DataDirLock) -> None:
    settings: Settings = app.state.settings
    try:
        # Loading weights and reading the FAISS file block for seconds: off the event loop.
        index = await run_in_threadpool(open_index, settings, lock)
    except Exception as exc:
        lock.release()
        app.state.startup_exception = exc
        startup_failed(app, _describe(exc))
        return
    app.state.index = index
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.watch(index)
    embedder = index.embedder
    log.info(
        "ready at %s: data dir %s, model %s, definition %s, engine %s, precision %s, %d images",
        app.state.url or "(in-process)",
        settings.data_dir,
        embedder.name,
        embedder.embedding.name,
        embedder.engine_name,
        embedder.engine.precision,
        len(index.vectors),
    )


async def _save_periodically(app: FastAPI, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        index: ImageIndex | None = app.state.index
        if index is None:
            continue
        try:
            await run_in_threadpool(index.flush)
        except StorageError as exc:
            log.warning("%s; retrying in %g s", exc, interval_s)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    url = app.state.url = server_url() if app.state.standalone else None
    if app.state.standalone and (warning := open_network_warning(settings)):
        print(warning, file=sys.stderr, flush=True)
        log.warning("the API is open to the network: no IMGSIM_API_KEYS")
    try:
        lock = DataDirLock(settings.data_dir, role="api", url=url)
    except (ImgsimError, OSError) as exc:
        startup_failed(app, _describe(exc))
        raise
    opening = asyncio.create_task(_open_in_background(app, lock))
    if not app.state.standalone:
        # In-process (tests, embedding the app): start like a library call, ready or raising when it returns.
        await opening
        if app.state.startup_exception is not None:
            raise app.state.startup_exception
    saver = asyncio.create_task(_save_periodically(app, settings.save_interval_s)) if settings.save_interval_s else None
    try:
        yield
    finally:
        if saver is not None:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
        await opening  # a shutdown during start waits for the model, then closes cleanly
        index, app.state.index = app.state.index, None
        if index is not None:
            await run_in_threadpool(close_index, index)
        lock.release()
