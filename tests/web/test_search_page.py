"""Search in Chromium against the real service: one request per search, a file that is not an image, a reload
of a search by an uploaded image."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

from tests.conftest import CAT_VARIANTS, IMAGES_DIR
from tests.web.conftest import Site

pytestmark = pytest.mark.browser


def searches(page: Page) -> list[str]:
    """The method of every request the page sends to /search, as it sends them."""
    sent: list[str] = []

    def seen(request: Request) -> None:
        if request.url.split("?")[0].endswith("/search"):
            sent.append(request.method)

    page.on("request", seen)
    return sent


@pytest.mark.parametrize("field", ["k", "label"])
def test_enter_in_a_field_sends_one_search_and_uploads_the_query_once(page: Page, field: str) -> None:
    sent = searches(page)
    page.goto("/")
    page.set_input_files("#file", IMAGES_DIR / "rocket.jpg")
    expect(page.locator("#results .card")).to_have_count(10)
    page.wait_for_load_state("networkidle")
    assert sent == ["POST"]

    page.fill(f"input[name={field}]", "3" if field == "k" else "cat")
    page.press(f"input[name={field}]", "Enter")
    expect(page.locator("#results .card")).to_have_count(3 if field == "k" else len(CAT_VARIANTS | {"cat.png"}))
    page.wait_for_load_state("networkidle")
    assert sent == ["POST", "POST"]


def test_enter_in_a_field_of_a_search_by_a_stored_image_sends_one_request(page: Page, site: Site) -> None:
    sent = searches(page)
    page.goto(f"/?ref={site.ids['rocket.jpg']}")
    expect(page.locator("#results .card")).to_have_count(10)
    page.fill("input[name=k]", "2")
    page.press("input[name=k]", "Enter")
    expect(page.locator("#results .card")).to_have_count(2)
    page.wait_for_load_state("networkidle")
    assert sent == ["GET", "GET"]


def test_a_file_that_is_not_an_image_is_refused_with_a_message(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    sent = searches(page)
    page.goto("/")
    page.set_input_files("#file", notes)
    expect(page.locator("#status.error")).to_contain_text("“notes.txt” is not an image file")
    assert sent == []


def test_reloading_an_upload_search_asks_for_the_image_again(page: Page) -> None:
    page.goto("/")
    page.set_input_files("#file", IMAGES_DIR / "rocket.jpg")
    expect(page.locator("#results .card")).to_have_count(10)
    page.select_option("select[name=metric]", "euclidean")
    expect(page.locator("#query")).to_contain_text("euclidean")

    page.reload()
    expect(page.locator("#status")).to_contain_text("The uploaded “rocket.jpg” is not kept by the page")
    expect(page.locator("#status")).to_contain_text("pick it again")
    expect(page.locator("#drop")).to_be_visible()
    assert page.locator("select[name=metric]").input_value() == "euclidean"
    expect(page.locator("#results .card")).to_have_count(0)

    page.set_input_files("#file", IMAGES_DIR / "rocket.jpg")
    expect(page.locator("#results .card")).to_have_count(10)
    expect(page.locator("#status")).to_be_empty()
