"""Which optional API routes this build of the service has."""

from __future__ import annotations

from fastapi.routing import APIRoute

from app.main import create_app
from index.config import Settings


def has_route(path: str, method: str = "GET") -> bool:
    # Building the app opens nothing (the model and index load in its lifespan).
    app = create_app(Settings())
    return any(isinstance(r, APIRoute) and r.path == path and method in r.methods for r in app.routes)


HAS_DUPLICATES_API = has_route("/duplicates")
