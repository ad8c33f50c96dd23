"""The Mercury app's logic, against a real API server (it only ever talks HTTP)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from apps import imgsim_app as imgsim
from tests.app.server import free_port
from tests.apps.conftest import CAT_VARIANTS, QUERY, STORED

pytestmark = pytest.mark.slow


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with imgsim.make_client(imgsim.AppConfig(api_url=api_url)) as http:
        yield http


def test_settings_come_from_the_environment_with_a_loopback_default(tmp_path: Path) -> None:
    assert imgsim.AppConfig.from_env({}) == imgsim.AppConfig("http://127.0.0.1:8080", None, None)
    env = {"IMGSIM_API_URL": "http://127.0.0.1:9000/", "IMGSIM_API_KEY": "s3cret", "IMGSIM_REF_IMAGE": "x.jpg"}
    config = imgsim.AppConfig.from_env(env)
    assert config == imgsim.AppConfig("http://127.0.0.1:9000", "s3cret", Path("x.jpg"))


def test_the_api_key_is_sent_as_a_header_only_when_set() -> None:
    with imgsim.make_client(imgsim.AppConfig(api_key="s3cret")) as http:
        assert http.headers[imgsim.API_KEY_HEADER] == "s3cret"
    with imgsim.make_client(imgsim.AppConfig()) as http:
        assert imgsim.API_KEY_HEADER not in http.headers


def test_an_upload_is_the_reference_and_the_environments_image_only_a_fallback(tmp_path: Path) -> None:
    ref = tmp_path / "ref.jpg"
    ref.write_bytes(b"from env")
    config = imgsim.AppConfig(ref_image=ref)
    assert imgsim.choose_reference("up.png", b"uploaded", config) == ("up.png", b"uploaded")
    assert imgsim.choose_reference(None, None, config) == ("ref.jpg", b"from env")
    assert imgsim.choose_reference(None, None, imgsim.AppConfig()) is None


def test_the_upload_widget_accepts_image_extensions_not_a_mime_pattern() -> None:
    assert imgsim.IMAGE_EXTENSIONS and all(ext.startswith(".") for ext in imgsim.IMAGE_EXTENSIONS)
    assert {".jpg", ".png", ".webp"} <= set(imgsim.IMAGE_EXTENSIONS)


def test_a_search_ranks_the_cats_variants_first_with_thumbnails(client: httpx.Client) -> None:
    html = imgsim.search_section(client, ("query.jpg", QUERY.read_bytes()), 5, "cosine")

    assert "5 most similar to query.jpg (cosine)" in html
    first_three = [html.split(f'data-rank="{rank}"')[1].split('data-filename="')[1].split('"')[0] for rank in (1, 2, 3)]
    assert set(first_three) == CAT_VARIANTS
    assert html.count("data:image/") == 6  # five results and the reference
    assert "similarity" in html


def test_euclidean_results_are_labelled_as_distances(client: httpx.Client) -> None:
    html = imgsim.search_section(client, ("query.jpg", QUERY.read_bytes()), 2, "euclidean")
    assert "(euclidean)" in html and "distance " in html and "similarity" not in html


def test_a_thumbnail_is_a_small_image_from_the_thumbnail_route_or_the_original(client: httpx.Client) -> None:
    listing = imgsim.list_images(client, 0, 1)
    data, content_type = imgsim.fetch_thumbnail(client, listing["items"][0]["id"])
    assert content_type.startswith("image/")
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) <= max(listing["items"][0]["width"], listing["items"][0]["height"])


def test_the_library_pages_through_every_stored_image(client: httpx.Client) -> None:
    seen: list[str] = []
    pages = imgsim.page_count(len(STORED), 3)
    for page in range(1, pages + 1):
        html = imgsim.library_section(client, page, per_page=3)
        assert f"Library: {len(STORED)} images, page {page} of {pages}" in html
        seen += [part.split('"')[0] for part in html.split('data-filename="')[1:]]
    assert sorted(seen) == sorted(STORED)


def test_a_page_past_the_end_shows_the_last_page(client: httpx.Client) -> None:
    pages = imgsim.page_count(len(STORED), 3)
    assert f"page {pages} of {pages}" in imgsim.library_section(client, 99, per_page=3)


def test_an_api_error_is_shown_as_a_message(client: httpx.Client) -> None:
    html = imgsim.search_section(client, ("notes.jpg", b"not an image"), 5, "cosine")
    assert 'role="alert"' in html and "Search failed: 422" in html and "notes.jpg" in html


def test_an_unreachable_api_is_shown_as_a_message() -> None:
    config = imgsim.AppConfig(api_url=f"http://127.0.0.1:{free_port()}")
    with imgsim.make_client(config) as http:
        html = imgsim.library_section(http, 1, per_page=3)
    assert 'role="alert"' in html and "cannot reach the imgsim API" in html


def test_file_names_are_escaped_in_the_page() -> None:
    hit = {"id": 1, "filename": '<img src=x onerror="alert(1)">.jpg', "score": 0.5, "predictions": []}
    html = imgsim.results_html("<b>ref</b>", {"metric": "cosine", "results": [hit]}, {})
    assert "<img src=x" not in html and "&lt;img src=x" in html and "&lt;b&gt;ref" in html


def test_each_card_names_its_image_and_links_to_its_page_on_the_service(client: httpx.Client, api_url: str) -> None:
    html = imgsim.library_section(client, 1, per_page=3)
    cards = html.split('class="imgsim-card"')[1:]
    assert len(cards) == 3
    for card in cards:
        image_id = card.split('data-id="')[1].split('"')[0]
        name = card.split('data-filename="')[1].split('"')[0]
        assert f'href="{api_url}/library/{image_id}" target="_blank"' in card
        assert f'alt="{name}"' in card and name in STORED


def test_no_prompt_is_a_search_until_a_reference_is_given(client: httpx.Client) -> None:
    html = imgsim.search_section(client, None, 5, "cosine")
    assert "Upload a reference image" in html and "data-rank" not in html
