"""The pages a person uses in a browser; each is a template, and its script fills it from the JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

WEB_DIR = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=WEB_DIR / "templates")

# The pages are not part of the API: left out of the OpenAPI schema.
router = APIRouter(include_in_schema=False)

NAV = (
    ("search", "/", "Search"),
    ("library", "/library", "Library"),
    ("library-labels", "/library/labels", "Labels"),
    ("add", "/library/add", "Add images"),
    ("duplicates", "/library/duplicates", "Duplicates"),
    ("trash", "/library/trash", "Trash"),
)


# The pages load only their own scripts, styles and images (and the object URLs of images the person drops),
# run no inline script, and may not be framed by another site (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _page(request: Request, view: str, title: str, **context: object) -> HTMLResponse:
    page = templates.TemplateResponse(request, f"{view}.html", {"view": view, "title": title, "nav": NAV, **context})
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    page.headers["X-Frame-Options"] = "DENY"
    return page


def _nav_page(view: str, title: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(request: Request) -> HTMLResponse:
        return _page(request, view, title)

    return page


# Search, the library, its labels, adding images, duplicates and the trash: each a template named after its view.
# Before the detail page, whose path would otherwise match /library/labels, /library/add, /library/duplicates and
# /library/trash.
for _view, _path, _title in NAV:
    router.add_api_route(_path, _nav_page(_view, _title), methods=["GET"], response_class=HTMLResponse)


@router.get("/library/{image_id}", response_class=HTMLResponse)
async def detail_page(request: Request, image_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)]) -> HTMLResponse:
    """One stored image: its names, facts, predictions and neighbours."""
    return _page(request, "detail", f"Image {image_id}", image_id=image_id)


def install_pages(app: FastAPI) -> None:
    """Serve the pages and their static files (styles, scripts) from this package."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
