"""The Mercury app's logic (apps/imgsim.ipynb): talk to a running imgsim API over HTTP and render HTML.

Only httpx and the standard library: Mercury starts a kernel per visitor, so the app never opens the data
directory itself; every read goes through the API, which is the one process that owns the index.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_KEY_HEADER = "X-API-Key"
# Extensions, not "image/*": Mercury 3.2's UploadFile drops every file when `accept` holds a MIME pattern,
# because the browser sends no type with the file.
IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
METRICS = ["cosine", "euclidean", "dot"]
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class AppConfig:
    api_url: str = DEFAULT_API_URL
    api_key: str | None = None
    ref_image: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AppConfig:
        """IMGSIM_API_URL, IMGSIM_API_KEY (sent as X-API-Key when set), IMGSIM_REF_IMAGE (a reference to search
        by when nothing was uploaded: how the notebook runs headless)."""
        ref = environ.get("IMGSIM_REF_IMAGE") or None
        return cls(
            api_url=(environ.get("IMGSIM_API_URL") or DEFAULT_API_URL).rstrip("/"),
            api_key=environ.get("IMGSIM_API_KEY") or None,
            ref_image=Path(ref) if ref else None,
        )


class ApiError(Exception):
    """The API answered an error, or could not be reached; the message is fit to show."""


def make_client(config: AppConfig) -> httpx.Client:
    headers = {API_KEY_HEADER: config.api_key} if config.api_key else {}
    return httpx.Client(base_url=config.api_url, headers=headers, timeout=TIMEOUT_S)


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise ApiError(f"cannot reach the imgsim API at {client.base_url}: {exc}") from exc
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(f"{response.status_code}: {detail}")
    return response


def search_by_upload(client: httpx.Client, name: str, data: bytes, k: int, metric: str) -> dict[str, Any]:
    """POST /search: the k stored images most similar to an image that is not stored."""
    response = _request(client, "POST", "/search", params={"k": k, "metric": metric}, files={"file": (name, data)})
    result: dict[str, Any] = response.json()
    return result


def list_images(client: httpx.Client, offset: int, limit: int) -> dict[str, Any]:
    """GET /images: one page of the library, with the total."""
    result: dict[str, Any] = _request(client, "GET", "/images", params={"offset": offset, "limit": limit}).json()
    return result


def fetch_thumbnail(client: httpx.Client, image_id: int) -> tuple[bytes, str]:
    """A small image for the grid: the thumbnail route, or the original bytes from a server without it."""
    try:
        response = _request(client, "GET", f"/images/{image_id}/thumbnail")
    except ApiError as exc:
        if not str(exc).startswith("404"):
            raise
        response = _request(client, "GET", f"/images/{image_id}/content")
    return response.content, response.headers.get("content-type", "application/octet-stream")


def choose_reference(
    upload_name: str | None, upload_value: bytes | None, config: AppConfig
) -> tuple[str, bytes] | None:
    """The uploaded reference, else IMGSIM_REF_IMAGE's file, else None (nothing to search by yet)."""
    if upload_name and upload_value:
        return upload_name, bytes(upload_value)
    if config.ref_image is not None:
        return config.ref_image.name, config.ref_image.read_bytes()
    return None


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def score_name(metric: str) -> str:
    return "distance" if metric == "euclidean" else "similarity"


def _predictions_text(predictions: list[dict[str, Any]], n: int = 2) -> str:
    return "; ".join(f"{p['label']} {round(100 * p['score'])}%" for p in predictions[:n])


_GRID = "display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px"
_CARD = "border:1px solid #ddd;border-radius:8px;padding:6px;font:13px sans-serif;overflow-wrap:anywhere"
_IMG = "width:100%;height:150px;object-fit:contain;background:#f4f4f4"


_LINK = "color:inherit;text-decoration:none;display:block"


def image_page_url(client: httpx.Client, image_id: int) -> str:
    """The service's own page of a stored image (its detail: names, facts, predictions, neighbours)."""
    return f"{str(client.base_url).rstrip('/')}/library/{image_id}"


def _card(image_src: str, lines: list[str], attrs: str, name: str, href: str) -> str:
    """A result or library card: the thumbnail (alt: the image's name) and its lines, one link to `href` in a
    new tab."""
    body = "".join(f"<div>{line}</div>" for line in lines)
    alt = escape(name, quote=True)
    image = f'<img src="{image_src}" alt="{alt}" style="{_IMG}">'
    link = f'<a class="imgsim-link" href="{escape(href, quote=True)}" target="_blank" rel="noopener" style="{_LINK}">'
    return f'<div class="imgsim-card" {attrs} style="{_CARD}">{link}{image}{body}</a></div>'


def message_html(text: str, error: bool = False) -> str:
    color = "#a40000" if error else "#444"
    role = ' role="alert"' if error else ""
    return f'<p class="imgsim-message"{role} style="color:{color};font:14px sans-serif">{escape(text)}</p>'


def results_html(
    reference_name: str,
    response: dict[str, Any],
    thumbnails: Mapping[int, str],
    reference_src: str = "",
    link: Callable[[int], str] = lambda image_id: f"/library/{image_id}",
) -> str:
    """The ranked results as a grid: rank, file name, score and top predictions under each thumbnail; each card
    links to `link(id)`, the image's page."""
    metric = response["metric"]
    hits = response["results"]
    reference = ""
    if reference_src:
        reference = f'<img class="imgsim-reference" src="{reference_src}" alt="reference" style="height:80px">'
    title = f"{reference}<h3>{len(hits)} most similar to {escape(reference_name)} ({escape(metric)})</h3>"
    if not hits:
        return title + message_html("No stored images to compare with: ingest some first.")
    cards = [
        _card(
            thumbnails.get(hit["id"], ""),
            [
                f"<b>{rank}.</b> {escape(hit['filename'])}",
                f"{score_name(metric)} {hit['score']:.4f}",
                escape(_predictions_text(hit["predictions"])),
            ],
            f'data-rank="{rank}" data-id="{hit["id"]}" data-filename="{escape(hit["filename"], quote=True)}"',
            hit["filename"],
            link(hit["id"]),
        )
        for rank, hit in enumerate(hits, 1)
    ]
    return f'{title}<div class="imgsim-results" style="{_GRID}">{"".join(cards)}</div>'


def library_html(
    listing: dict[str, Any],
    thumbnails: Mapping[int, str],
    page: int,
    pages: int,
    link: Callable[[int], str] = lambda image_id: f"/library/{image_id}",
) -> str:
    """One page of stored images as a grid, with the total; each card links to `link(id)`, the image's page."""
    items = listing["items"]
    title = f"<h3>Library: {listing['total']} images, page {page} of {pages}</h3>"
    if not items:
        return title + message_html("The library is empty." if listing["total"] == 0 else "No images on this page.")
    cards = [
        _card(
            thumbnails.get(item["id"], ""),
            [
                f"#{item['id']} {escape(item['filename'])}",
                f"{item['width']}x{item['height']} {escape(item['format'])}",
                escape(_predictions_text(item["predictions"], 1)),
            ],
            f'data-id="{item["id"]}" data-filename="{escape(item["filename"], quote=True)}"',
            item["filename"],
            link(item["id"]),
        )
        for item in items
    ]
    return f'{title}<div class="imgsim-library" style="{_GRID}">{"".join(cards)}</div>'


def thumbnails_for(client: httpx.Client, ids: list[int]) -> dict[int, str]:
    """Data URIs of the thumbnails of these images (the browser never talks to the API itself); an image deleted
    in the meantime just has none."""
    thumbnails: dict[int, str] = {}
    for image_id in ids:
        try:
            thumbnails[image_id] = data_uri(*fetch_thumbnail(client, image_id))
        except ApiError as exc:
            if not str(exc).startswith("404"):
                raise
    return thumbnails


def search_section(client: httpx.Client, reference: tuple[str, bytes] | None, k: int, metric: str) -> str:
    """The search part of the page: a prompt, the ranked results, or the API's error."""
    if reference is None:
        return message_html("Upload a reference image to see the most similar stored images.")
    name, data = reference
    try:
        response = search_by_upload(client, name, data, k, metric)
        thumbnails = thumbnails_for(client, [hit["id"] for hit in response["results"]])
    except ApiError as exc:
        return message_html(f"Search failed: {exc}", error=True)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    link = partial(image_page_url, client)
    return results_html(name, response, thumbnails, data_uri(data, content_type), link)


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def library_section(client: httpx.Client, page: int, per_page: int) -> str:
    """The library part of the page: one page of stored images (pages count from 1)."""
    page = max(1, int(page))
    try:
        listing = list_images(client, (page - 1) * per_page, per_page)
        pages = page_count(listing["total"], per_page)
        if page > pages:  # past the end (the library shrank): show the last page
            page = pages
            listing = list_images(client, (page - 1) * per_page, per_page)
        thumbnails = thumbnails_for(client, [item["id"] for item in listing["items"]])
    except ApiError as exc:
        return message_html(f"Could not list the library: {exc}", error=True)
    return library_html(listing, thumbnails, page, pages, partial(image_page_url, client))
