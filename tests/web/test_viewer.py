"""The viewer in Chromium against the real service: a picture of the search results, the library or a detail
page's neighbours opens full size with its facts, arrows step through the grid, Esc closes, the address's hash
holds the open image, and its buttons search by it and move it to the trash (with Undo, the library's count
following)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import Site
from tests.web.sample import derived_photos

pytestmark = pytest.mark.browser

# The whole picture has arrived and decoded (a broken image has naturalWidth 0).
PICTURE_SHOWN = """() => {
    const i = document.querySelector('#viewer .viewer-image');
    return i.complete && i.naturalWidth > 0;
}"""


def viewer_name(page: Page) -> str:
    return page.locator("#viewer .viewer-name").inner_text()


def card_id(page: Page, n: int) -> int:
    return int(page.locator("#results .card").nth(n).get_attribute("data-id") or "")


def hash_of(page: Page) -> str:
    return str(page.evaluate("location.hash"))


def test_clicking_a_result_opens_it_in_the_viewer_and_the_arrows_step_through_the_results(
    page: Page, site: Site
) -> None:
    page.goto(f"/?ref={site.ids['cat.png']}&k=5")
    expect(page.locator("#results .card")).to_have_count(5)
    names = page.locator("#results .card .name").all_inner_texts()
    search_url = page.url

    page.locator("#results .card").nth(1).locator("a.thumb").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator(".viewer-name")).to_have_text(names[1])
    expect(viewer.locator(".viewer-facts")).to_contain_text(" px")
    expect(viewer.locator(".viewer-preds li").first).to_be_visible()
    first_id = card_id(page, 1)
    assert viewer.locator(".viewer-image").get_attribute("src") == f"/images/{first_id}/content"
    page.wait_for_function(PICTURE_SHOWN)
    assert hash_of(page) == f"#image={first_id}"
    assert page.url.split("#")[0] == search_url, "opening the viewer is no search"
    assert viewer.locator(".viewer-download").get_attribute("download") == names[1]

    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".viewer-name")).to_have_text(names[2])
    assert hash_of(page) == f"#image={card_id(page, 2)}"
    page.keyboard.press("ArrowLeft")
    expect(viewer.locator(".viewer-name")).to_have_text(names[1])
    # The ‹ button steps back too, and is disabled on the first: the arrows still work after it had focus.
    viewer.get_by_role("button", name="Previous image").click()
    expect(viewer.locator(".viewer-name")).to_have_text(names[0])
    expect(viewer.locator(".viewer-prev")).to_be_disabled()
    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".viewer-name")).to_have_text(names[1])
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # the first has no previous: it stays
    expect(viewer.locator(".viewer-name")).to_have_text(names[0])
    expect(viewer.locator(".viewer-position")).to_have_text("1 of 5")

    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    assert hash_of(page) == ""
    assert page.locator("#results .card .name").all_inner_texts() == names


def test_an_address_with_the_image_in_its_hash_opens_the_viewer(page: Page, site: Site) -> None:
    page.goto("/library")
    expect(page.locator("#results .card").first).to_be_visible()
    third = page.locator("#results .card").nth(2)
    third_id, third_name = int(third.get_attribute("data-id") or ""), third.locator(".name").inner_text()
    fourth_name = page.locator("#results .card").nth(3).locator(".name").inner_text()

    page.goto(f"/library#image={third_id}")
    page.reload()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer .viewer-name")).to_have_text(third_name)
    page.wait_for_function(PICTURE_SHOWN)
    expect(page.locator("#viewer .viewer-position")).to_contain_text("3 of ")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer .viewer-name")).to_have_text(fourth_name)


def test_find_similar_in_the_viewer_searches_by_the_image(page: Page, site: Site) -> None:
    rocket = site.ids["rocket.jpg"]
    page.goto("/library")
    page.locator("#results .card", has_text="rocket.jpg").locator("a.thumb").click()
    page.locator("#viewer").get_by_role("button", name="Find similar").click()
    expect(page.locator("#query")).to_contain_text("rocket.jpg")
    assert parse_qs(urlparse(page.url).query)["ref"] == [str(rocket)]
    expect(page.locator("#results .card").first).to_be_visible()

    # From the results, the same button searches again without leaving the page.
    clicked = page.locator("#results .card .name").first.inner_text()
    page.locator("#results .card").first.locator("a.thumb").click()
    page.locator("#viewer").get_by_role("button", name="Find similar").click()
    expect(page.locator("#viewer")).to_be_hidden()
    expect(page.locator("#query")).to_contain_text(clicked)
    assert parse_qs(urlparse(page.url).query)["ref"] == [str(site.ids[clicked])]
    assert hash_of(page) == ""


def test_moving_to_the_trash_from_the_viewer_removes_the_card_and_offers_undo(
    page: Page, site: Site, tmp_path: Path
) -> None:
    photo = derived_photos(tmp_path, 1, start=9)[0]
    answer = httpx.post(f"{site.url}/ingest", files=[("files", (photo.name, photo.read_bytes()))], timeout=120)
    image_id = answer.json()["results"][0]["id"]

    page.goto(f"/library?name={photo.stem}")
    expect(page.locator("#results .card")).to_have_count(1)
    expect(page.locator("#summary")).to_have_text("1–1 of 1 matching image")
    page.locator("#results .card a.thumb").click()
    expect(page.locator("#viewer .viewer-name")).to_have_text(photo.name)
    page.locator("#viewer").get_by_role("button", name="Move to the trash").click()
    expect(page.locator("#viewer")).to_be_hidden()
    expect(page.locator("#results .card")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text(f"Moved {photo.name} to the trash")
    expect(page.locator("#summary")).to_have_text("0 matching images")
    assert hash_of(page) == ""
    trash = httpx.get(f"{site.url}/trash", params={"limit": 200}).json()
    assert image_id in [item["id"] for item in trash["items"]]

    page.locator("#status").get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_contain_text(f"Restored {photo.name}")
    expect(page.locator("#results .card")).to_have_count(1)
    expect(page.locator("#summary")).to_have_text("1–1 of 1 matching image")
    assert httpx.get(f"{site.url}/images/{image_id}").json()["trashed_at"] is None


def test_a_neighbour_on_the_detail_page_opens_in_the_viewer(page: Page, site: Site) -> None:
    detail = f"/library/{site.ids['rocket.jpg']}"
    page.goto(detail)
    neighbour = page.locator("#neighbours .card").first
    expect(neighbour).to_be_visible()
    neighbour_id = int(neighbour.get_attribute("data-id") or "")
    neighbour_name = neighbour.locator(".name").inner_text()
    count = page.locator("#neighbours .card").count()

    neighbour.locator("a.thumb").click()
    viewer = page.locator("#viewer")
    expect(viewer.locator(".viewer-name")).to_have_text(neighbour_name)
    page.wait_for_function(PICTURE_SHOWN)
    assert urlparse(page.url).path == detail and urlparse(page.url).query == "", "no search ran"
    assert hash_of(page) == f"#image={neighbour_id}"
    expect(viewer.locator(".viewer-position")).to_have_text(f"1 of {count}")
    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".viewer-name")).to_have_text(page.locator("#neighbours .card .name").nth(1).inner_text())
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.locator("#detail-title")).to_have_text("rocket.jpg")


def test_the_viewer_fits_a_phone_in_the_dark(browser: Browser, site: Site) -> None:
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"/?ref={site.ids['coffee.jpg']}&k=12")
        expect(page.locator("#results .card").first).to_be_visible()
        page.locator("#results .card").first.locator("a.thumb").click()
        expect(page.locator("#viewer .viewer-facts")).to_contain_text(" px")
        page.wait_for_function(PICTURE_SHOWN)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = page.locator("#viewer").evaluate(
            "d => ({right: d.getBoundingClientRect().right, wide: d.scrollWidth, seen: d.clientWidth})"
        )
        assert box["right"] <= 390 and box["wide"] <= box["seen"], box
        for name in ("Find similar", "Download", "Move to the trash"):
            right = page.locator("#viewer").get_by_role("link" if name == "Download" else "button", name=name)
            assert right.evaluate("b => b.getBoundingClientRect().right") <= 390, name
        image = page.locator("#viewer .viewer-image")
        assert image.evaluate("i => getComputedStyle(i).objectFit") == "contain"
        # The dark theme's card colour (--card), not the light one.
        assert page.locator("#viewer").evaluate("d => getComputedStyle(d).backgroundColor") == "rgb(26, 32, 40)"
    finally:
        context.close()
