"""The library's own tools in Chromium against the real service: the order chosen (kept by the address and the
pager), selecting cards (shift-click for a range) and moving them to the trash after one confirmation, and the
Labels view, whose counts are the API's and whose links filter the library."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site
from tests.web.sample import derived_photos

pytestmark = pytest.mark.browser

# Counts the page's own confirmation dialogs as they open (a native confirm() would be a Playwright "dialog").
COUNT_CONFIRMATIONS = """
window.confirmations = 0;
const showModal = HTMLDialogElement.prototype.showModal;
HTMLDialogElement.prototype.showModal = function () {
    if (this.id === "confirm-dialog") window.confirmations += 1;
    return showModal.call(this);
};
"""


def card_names(page: Page) -> list[str]:
    return page.locator("#results .card .name").all_inner_texts()


def api_listing(site: Site, **params: object) -> dict:
    return httpx.get(f"{site.url}/images", params={"limit": 1000, **params}).json()


def api_names(site: Site, **params: object) -> list[str]:
    return [item["filename"] for item in api_listing(site, **params)["items"]]


def add_photos(site: Site, folder: Path, count: int, start: int) -> dict[str, int]:
    photos = derived_photos(folder, count, start=start)
    files = [("files", (p.name, p.read_bytes())) for p in photos]
    answer = httpx.post(f"{site.url}/ingest", files=files, timeout=300)
    answer.raise_for_status()
    return {r["filename"]: r["id"] for r in answer.json()["results"]}


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def test_the_chosen_order_decides_what_comes_first_and_the_address_and_the_pager_keep_it(
    page: Page, site: Site
) -> None:
    by_name, by_size = api_names(site, sort="name"), api_names(site, sort="-size")
    assert by_name[:4] != by_size[:4], "the sample photos come in another order by size than by name"
    page.goto("/library?limit=4")
    expect(page.locator("#results .card")).to_have_count(4)

    page.select_option("select[name=sort]", "name")
    page.wait_for_url(lambda url: "sort=name" in url)
    expect(page.locator("#results .card .name").first).to_have_text(by_name[0])
    assert card_names(page) == by_name[:4]
    assert query_of(page)["limit"] == ["4"], "the page size stays"

    page.select_option("select[name=sort]", "-size")
    page.wait_for_url(lambda url: "sort=-size" in url)
    expect(page.locator("#results .card .name").first).to_have_text(by_size[0])
    assert card_names(page) == by_size[:4]

    page.reload()
    expect(page.locator("select[name=sort]")).to_have_value("-size")
    expect(page.locator("#results .card .name").first).to_have_text(by_size[0])
    page.locator("#pager a[rel=next]").click()
    page.wait_for_url(lambda url: "offset=4" in url)
    assert query_of(page)["sort"] == ["-size"]
    expect(page.locator("#results .card .name").first).to_have_text(by_size[4])
    assert card_names(page) == by_size[4:8]


def test_shift_click_selects_a_range_and_one_confirmation_moves_it_to_the_trash(
    page: Page, site: Site, tmp_path: Path
) -> None:
    ids = add_photos(site, tmp_path, 4, start=20)
    names = sorted(ids)
    page.add_init_script(COUNT_CONFIRMATIONS)
    native: list[str] = []
    page.on("dialog", lambda dialog: native.append(dialog.message))
    page.goto("/library?name=derived_02&sort=name")
    expect(page.locator("#summary")).to_have_text("1–4 of 4 matching images")
    assert card_names(page) == names

    select = page.get_by_role("button", name="Select", exact=True)
    select.click()
    expect(select).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#selection-count")).to_have_text("0 selected")
    cards = page.locator("#results .card")
    cards.nth(0).locator("a.thumb").click()
    cards.nth(2).locator("a.thumb").click(modifiers=["Shift"])
    expect(page.locator("#selection-count")).to_have_text("3 selected")
    expect(page.locator("#viewer")).to_be_hidden()
    assert page.locator("#results .pick:checked").count() == 3
    # The checkboxes are the keyboard's way: Space unpicks the third, and picks it again.
    third = page.get_by_role("checkbox", name=f"Select {names[2]}")
    third.focus()
    page.keyboard.press("Space")
    expect(page.locator("#selection-count")).to_have_text("2 selected")
    page.keyboard.press("Space")
    expect(page.locator("#selection-count")).to_have_text("3 selected")

    page.get_by_role("button", name="Move to the trash…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".confirm-text")).to_contain_text("Move 3 images to the trash?")
    assert dialog.locator(".confirm-list li").all_inner_texts() == names[:3]
    dialog.locator(".confirm-ok").click()
    expect(page.locator("#status")).to_contain_text("Moved 3 images to the trash.")
    expect(page.locator("#summary")).to_have_text("1–1 of 1 matching image")
    assert card_names(page) == [names[3]]
    expect(page.locator("#selection-count")).to_have_text("0 selected")
    assert page.evaluate("window.confirmations") == 1 and native == []

    trash = httpx.get(f"{site.url}/trash", params={"limit": 200}).json()
    assert {ids[n] for n in names[:3]} <= {item["id"] for item in trash["items"]}
    assert api_listing(site, name="derived_02")["total"] == 1

    page.locator("#status").get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_contain_text("Restored 3 images.")
    expect(page.locator("#summary")).to_have_text("1–4 of 4 matching images")
    assert api_listing(site, name="derived_02")["total"] == 4


def test_cancelling_the_confirmation_moves_nothing_and_leaving_select_mode_clears_the_selection(
    page: Page, site: Site
) -> None:
    page.goto("/library")
    total = api_listing(site)["total"]
    expect(page.locator("#summary")).to_contain_text(f"of {total} images")
    page.get_by_role("button", name="Select", exact=True).click()
    page.locator("#results .card").nth(1).locator("a.thumb").click()
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    page.get_by_role("button", name="Move to the trash…").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    assert api_listing(site)["total"] == total

    page.get_by_role("button", name="Select", exact=True).click()
    expect(page.locator("#selection-bar")).to_be_hidden()
    assert page.locator("#results .card.picked").count() == 0
    # Out of select mode a picture opens in the viewer again.
    page.locator("#results .card").nth(1).locator("a.thumb").click()
    expect(page.locator("#viewer")).to_be_visible()


def test_the_labels_view_lists_the_librarys_labels_with_their_counts_and_each_filters_the_library(
    page: Page, site: Site
) -> None:
    labels = httpx.get(f"{site.url}/labels/library").json()["labels"]
    assert len(labels) > 3
    page.goto("/library")
    page.locator("header.top nav").get_by_role("link", name="Labels").click()
    page.wait_for_url(lambda url: url.endswith("/library/labels"))
    expect(page.locator("#labels li")).to_have_count(len(labels))
    expect(page.get_by_role("link", name="Labels", exact=True)).to_have_attribute("aria-current", "page")
    shown = [
        (name, int(count.replace(",", "")))
        for name, count in zip(
            page.locator("#labels .label-name").all_inner_texts(),
            page.locator("#labels .label-count").all_inner_texts(),
            strict=True,
        )
    ]
    assert shown == [(x["label"], x["images"]) for x in labels]

    for item in (labels[0], labels[-1]):
        page.goto("/library/labels")
        page.locator(f'#labels li[data-class-index="{item["class_index"]}"] a').click()
        page.wait_for_url(lambda url: "label=" in url)
        assert query_of(page)["label"] == [item["label"]]
        many = "image" if item["images"] == 1 else "images"
        expect(page.locator("#summary")).to_contain_text(f"of {item['images']} matching {many}")
        expect(page.locator("#results .card")).to_have_count(min(item["images"], 48))
        assert set(card_names(page)) == set(api_names(site, label=item["label"]))
