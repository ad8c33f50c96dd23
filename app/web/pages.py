"""The pages a person uses in a browser; each is a template, and its script fills it from the JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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


def _page(request: Request, view: str, title: str, status_code: int = 200, **context: object) -> HTMLResponse:
    page = templates.TemplateResponse(
        request, f"{view}.html", {"view": view, "title": title, "nav": NAV, **context}, status_code=status_code
    )
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


MAX_IMAGE_ID = 2**63 - 1


# Digits only: `/library/abc` matches no route, so it is a 404 like any unknown path (not a 422 about a field).
@router.get("/library/{image_id:int}", response_class=HTMLResponse)
async def detail_page(request: Request, image_id: int) -> HTMLResponse:
    """One stored image: its names, facts, predictions and neighbours."""
    if not 1 <= image_id <= MAX_IMAGE_ID:
        raise HTTPException(404)
    return _page(request, "detail", f"Image {image_id}", image_id=image_id)


def wants_html(request: Request) -> bool:
    """A browser navigating (it names text/html); API clients send application/json, */* or nothing."""
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


async def _not_found(request: Request, exc: Exception) -> Response:
    """A 404 for a person is a page in the site's style with a way home; for an API client it stays JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and wants_html(request):
        return _page(request, "not_found", "Not found", status_code=404, path=request.url.path)
    return await http_exception_handler(request, exc)


def install_pages(app: FastAPI) -> None:
    """Serve the pages and their static files (styles, scripts) from this package, and the 404 page."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.add_exception_handler(StarletteHTTPException, _not_found)
