"""The FastAPI application: `uvicorn app.main:app --port 8080`."""

from __future__ import annotations

import logging
import sys

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.auth import REDACT_KEYS, ApiKeyAuth, Keys, document_security
from app.docs import install_docs
from app.errors import JsonServerErrors, install_error_handlers
from app.lifecycle import close_index, lifespan, log_to_stderr, open_index
from app.metrics import install_metrics
from app.middleware import BodySizeLimit, NoSniff, SlowBodyGuard
from app.origins import HostAllowList, SameOriginWrites
from app.routes import compat, duplicates, images, inference, ingest, labels, search, session, system, trash
from app.strict import reject_unknown_parameters
from app.web.pages import install_pages
from index import __version__
from index.config import Settings, get_settings
from index.startup import InvalidSettings, load_settings

__all__ = ["close_index", "create_app", "open_index"]

DESCRIPTION = """Image similarity search: CNN embeddings of uploaded photos in a persistent FAISS + SQLite index.

Upload images to `/ingest`, then find similar ones with `/search`. `/embed` and `/predict` run the model
without storing anything. Concurrent requests share forward passes (dynamic micro-batching).
"""


def create_app(settings: Settings | None = None, *, standalone: bool = False) -> FastAPI:
    """The API over the index in `settings.data_dir` (default: the environment's settings).

    `standalone`: the app is the whole process (`uvicorn app.main:app`): it answers `/health` at once while
    the model loads in the background, a failed start prints one line and exits, and the server's address is
    recorded beside the data directory's lock. Otherwise the lifespan returns once the index is open.

    Raises:
        InvalidSettings: IMGSIM_REQUIRE_KEYS without IMGSIM_API_KEYS.
    """
    settings = settings or get_settings()
    if settings.require_keys and not settings.api_keys:
        raise InvalidSettings(
            "IMGSIM_REQUIRE_KEYS is set but IMGSIM_API_KEYS is empty: set keys, e.g. "
            'IMGSIM_API_KEYS="$(openssl rand -hex 16):write"'
        )
    # The docs pages are served from local files (app/docs.py), not FastAPI's CDN-based defaults.
    app = FastAPI(
        title="imgsim",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_parameters)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.index = None
    app.state.standalone = standalone
    app.state.url = None
    app.state.startup_error = None
    app.state.startup_exception = None
    install_error_handlers(app)
    install_metrics(app)
    # Added innermost first: a request passes CORS, then the JSON error net, then the key check, then the
    # body limits (size, rate), before it reaches a route.
    app.add_middleware(SlowBodyGuard, min_rate=settings.min_body_rate, grace_s=settings.header_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.state.keys = Keys(settings.key_scopes())
    app.add_middleware(ApiKeyAuth, keys=app.state.keys)
    app.add_middleware(JsonServerErrors)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    for module in (system, inference, ingest, search, images, labels, duplicates, trash, session):
        app.include_router(module.router)
    app.include_router(compat.router)
    # Before anything else: a request from a rebound name or another site's page goes no further.
    app.add_middleware(SameOriginWrites, cors_origins=settings.cors_origins)
    app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)
    # Outermost, so that it also reshapes errors answered before routing (e.g. the body size limit).
    app.add_middleware(compat.MessageErrors)
    app.add_middleware(NoSniff)
    install_docs(app)
    document_security(app)
    install_pages(app)
    # uvicorn logs each request line: a key someone put in a URL (refused above) is not written there.
    logging.getLogger("uvicorn.access").addFilter(REDACT_KEYS)
    return app


def _standalone_app() -> FastAPI:
    try:
        settings = load_settings()
        log_to_stderr()
        return create_app(settings, standalone=True)
    except InvalidSettings as exc:
        # Imported by uvicorn: one line and a non-zero exit instead of a pydantic traceback.
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


app = _standalone_app()
