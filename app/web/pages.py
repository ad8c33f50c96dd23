"""The pages a person uses in a browser; each is a template, and its script fills it from the JSON API."""

from __future__ import annotations

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
    ("add", "/library/add", "Add images"),
    ("duplicates", "/library/duplicates", "Duplicates"),
)


def _page(request: Request, view: str, title: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, f"{view}.html", {"view": view, "title": title, "nav": NAV, **context})


@router.get("/", response_class=HTMLResponse)
async def search_page(request: Request) -> HTMLResponse:
    """Search by an uploaded image or a stored one; the query string holds the search."""
    return _page(request, "search", "Search")


@router.get("/library", response_class=HTMLResponse)
async def library_page(request: Request) -> HTMLResponse:
    """Every stored image, a page at a time, filtered by label and name."""
    return _page(request, "library", "Library")


@router.get("/library/add", response_class=HTMLResponse)
async def add_page(request: Request) -> HTMLResponse:
    """Upload many files or a folder, in batches."""
    return _page(request, "add", "Add images")


@router.get("/library/duplicates", response_class=HTMLResponse)
async def duplicates_page(request: Request) -> HTMLResponse:
    """Review groups of duplicates and delete all but one of each."""
    return _page(request, "duplicates", "Duplicates")


@router.get("/library/{image_id}", response_class=HTMLResponse)
async def detail_page(request: Request, image_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)]) -> HTMLResponse:
    """One stored image: its names, facts, predictions and neighbours."""
    return _page(request, "detail", f"Image {image_id}", image_id=image_id)


def install_pages(app: FastAPI) -> None:
    """Serve the pages and their static files (styles, scripts) from this package."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
