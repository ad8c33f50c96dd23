"""The Trash view in Chromium against the real service: reached from the navigation, thumbnails and names of
what was moved there and when, restore (with Undo), delete for good and empty the trash (both asked first)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site

pytestmark = pytest.mark.browser

# Every thumbnail of the trash has arrived and decoded (a broken image has naturalWidth 0).
ALL_THUMBNAILS_SHOWN = """() => {
    const imgs = [...document.querySelectorAll('#results .card img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def trash(site: Site, *names: str) -> list[int]:
    ids = [site.ids[name] for name in names]
    for image_id in ids:
        assert httpx.delete(f"{site.url}/images/{image_id}").status_code == 200
    return ids


def in_trash(site: Site) -> list[int]:
    return [i["id"] for i in httpx.get(f"{site.url}/trash", params={"limit": 1000}).json()["items"]]


def test_the_trash_is_in_the_navigation_and_shows_what_was_moved_there(page: Page, site: Site) -> None:
    page.goto("/library")
    page.get_by_role("link", name="Trash").click()
    page.wait_for_url("**/library/trash")
    expect(page.locator(".empty")).to_contain_text("The trash is empty")
    expect(page.get_by_role("button", name="Empty the trash…")).to_be_hidden()

    moved = trash(site, "coins.jpg", "camera.jpg")
    page.reload()
    cards = page.locator("#results .card")
    expect(cards).to_have_count(2)
    assert cards.locator(".name").all_inner_texts() == ["camera.jpg", "coins.jpg"]  # the most recent first
    expect(cards.first.locator(".when")).to_contain_text("trashed")
    expect(page.locator("#summary")).to_have_text("2 images in the trash")
    expect(page.locator("#retention")).to_contain_text("30 days")
    page.wait_for_function(ALL_THUMBNAILS_SHOWN)
    for image_id in moved:
        httpx.post(f"{site.url}/trash/{image_id}/restore")


def test_restoring_from_the_trash_view_can_be_undone(page: Page, site: Site) -> None:
    (rocket,) = trash(site, "rocket.jpg")
    page.goto("/library/trash")
    card = page.locator("#results .card", has_text="rocket.jpg")
    card.get_by_role("button", name="Restore").click()
    expect(page.locator("#status")).to_contain_text("Restored rocket.jpg to the library")
    expect(page.locator("#results .card")).to_have_count(0)
    assert in_trash(site) == [] and httpx.get(f"{site.url}/search", params={"ref": "rocket.jpg"}).status_code == 200

    page.locator("#status").get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_contain_text("Moved rocket.jpg back to the trash")
    expect(page.locator("#results .card", has_text="rocket.jpg")).to_have_count(1)
    assert in_trash(site) == [rocket]
    httpx.post(f"{site.url}/trash/{rocket}/restore")


def test_deleting_for_good_and_emptying_the_trash_ask_first(page: Page, site: Site) -> None:
    coffee, coins, camera = trash(site, "coffee.jpg", "coins.jpg", "camera.jpg")
    page.goto("/library/trash")
    dialog = page.locator("#confirm-dialog")
    page.locator("#results .card", has_text="coffee.jpg").get_by_role("button", name="Delete for good…").click()
    expect(dialog).to_contain_text("Delete coffee.jpg for good")
    dialog.get_by_role("button", name="Cancel").click()
    assert sorted(in_trash(site)) == sorted([coffee, coins, camera])

    page.locator("#results .card", has_text="coffee.jpg").get_by_role("button", name="Delete for good…").click()
    dialog.get_by_role("button", name="Delete for good").click()
    expect(page.locator("#status")).to_contain_text("Deleted coffee.jpg for good")
    expect(page.locator("#results .card")).to_have_count(2)
    assert httpx.get(f"{site.url}/images/{coffee}").status_code == 404

    page.get_by_role("button", name="Empty the trash…").click()
    expect(dialog).to_contain_text("2 images will be deleted for good")
    dialog.get_by_role("button", name="Cancel").click()
    assert sorted(in_trash(site)) == sorted([coins, camera])
    page.get_by_role("button", name="Empty the trash…").click()
    dialog.get_by_role("button", name="Empty the trash").click()
    expect(page.locator("#status")).to_contain_text("Deleted 2 images for good")
    expect(page.locator(".empty")).to_contain_text("The trash is empty")
    assert in_trash(site) == []
    assert all(httpx.get(f"{site.url}/images/{i}").status_code == 404 for i in (coins, camera))
