"""The page's layout and themes in Chromium: every view fits a phone and a wide screen without sideways
scrolling, long names are cut or wrapped, the grid keeps two columns on a phone and square cells, and the
colours follow the system's dark mode unless the header's toggle (remembered) says otherwise, readable in both."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.conftest import IMAGES_DIR
from tests.web.conftest import Site

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1920, "height": 1080}
LONG_NAME = "holiday 2023 - the cat on the sofa, from the camera roll IMG_20230704_181512_edited_final_v2.jpg"
LONG_TRASHED = "scan_of_the_old_family_album_page_0042_after_cleaning_and_colour_correction_2024-01-05.jpg"
VIEWS = ["search", "library", "library-selecting", "labels", "add", "duplicates", "trash", "detail"]

OpenPage = Callable[..., Page]


@pytest.fixture(scope="module")
def long_names(site: Site) -> dict[str, int]:
    """A copy of cat.png under a long name (it joins the cats' duplicate group) and a photo under another long
    name moved to the trash (with one more photo), so each view has a long name to lay out."""
    ids = {}
    for name, source, factor in ((LONG_NAME, "cat.png", 2), (LONG_TRASHED, "coffee.jpg", 3)):
        with Image.open(IMAGES_DIR / source) as img:
            small = io.BytesIO()
            img.convert("RGB").resize((img.width // factor, img.height // factor)).save(small, "JPEG", quality=90)
        answer = httpx.post(f"{site.url}/ingest", files=[("files", (name, small.getvalue()))], timeout=120)
        ids[name] = answer.json()["results"][0]["id"]
    for image_id in (ids[LONG_TRASHED], site.ids["made_0.jpg"]):
        httpx.delete(f"{site.url}/images/{image_id}").raise_for_status()
    return ids


@pytest.fixture
def open_page(browser: Browser, site: Site) -> Iterator[OpenPage]:
    """Fresh browser contexts at a given viewport and system colour scheme; a script error fails the test."""
    contexts, errors = [], []

    def open_(viewport: dict[str, int] = PHONE, color_scheme: str = "light") -> Page:
        context = browser.new_context(base_url=site.url, viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], f"script errors on the page: {errors}"


def show(page: Page, view: str, ids: dict[str, int], tmp_path: Path) -> None:
    """Open `view` with a long file name on it and wait until it is drawn."""
    long_id = ids[LONG_NAME]
    if view == "search":
        page.goto(f"/?ref={long_id}&k=12")
        page.locator("#results .card").nth(1).wait_for()
    elif view == "library":
        page.goto("/library")
        page.locator("#results .card").nth(1).wait_for()
    elif view == "library-selecting":
        page.goto("/library")
        page.locator("#results .card").nth(1).wait_for()
        page.get_by_role("button", name="Select", exact=True).click()
        page.locator("#results .card a.thumb").first.click()
        page.locator("#results .card a.thumb").nth(2).click(modifiers=["Shift"])
        expect(page.locator("#selection-count")).to_have_text("3 selected")
    elif view == "labels":
        page.goto("/library/labels")
        page.locator("#labels li a").nth(1).wait_for()
    elif view == "add":
        named = tmp_path / LONG_NAME
        named.write_bytes((IMAGES_DIR / "coffee.jpg").read_bytes())
        page.goto("/library/add")
        page.set_input_files("#files", named)
        expect(page.locator("#file-list td.exists")).to_have_count(1)
    elif view == "duplicates":
        page.goto("/library/duplicates?level=near")
        page.locator(f'.member[data-id="{long_id}"]').wait_for()
    elif view == "trash":
        page.goto("/library/trash")
        page.locator(f'#results .card[data-id="{ids[LONG_TRASHED]}"]').wait_for()
    else:
        page.goto(f"/library/{long_id}")
        page.locator("#neighbours .card").first.wait_for()
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_no_view_scrolls_sideways(
    open_page: OpenPage, long_names: dict[str, int], tmp_path: Path, view: str, viewport: dict[str, int]
) -> None:
    page = open_page(viewport)
    show(page, view, long_names, tmp_path)
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= page.evaluate("window.innerWidth"), f"{view} is {wide} px wide"


@pytest.mark.parametrize("view", ["search", "library", "trash"])
def test_a_phone_shows_two_or_more_columns_of_square_thumbnails(
    open_page: OpenPage, long_names: dict[str, int], tmp_path: Path, view: str
) -> None:
    page = open_page(PHONE)
    show(page, view, long_names, tmp_path)
    first, second = (page.locator("#results .card").nth(n).bounding_box() for n in (0, 1))
    assert first and second
    assert second["x"] >= first["x"] + first["width"] and second["y"] == first["y"], "side by side"
    cells = page.locator("#results .card .thumb").evaluate_all(
        "cells => cells.map(c => [c.getBoundingClientRect().width, c.getBoundingClientRect().height,"
        " getComputedStyle(c.querySelector('img')).objectFit])"
    )
    assert len({round(h) for _, h, _ in cells}) == 1, "every cell has the same height: the rows are even"
    assert all(abs(w - h) < 1 and fit == "cover" for w, h, fit in cells), cells


def test_the_grid_grows_on_a_wide_screen(open_page: OpenPage, long_names: dict[str, int], tmp_path: Path) -> None:
    page = open_page(DESKTOP)
    show(page, "library", long_names, tmp_path)
    grid = page.locator("#results").bounding_box()
    assert grid and grid["width"] > 1600
    tops = page.locator("#results .card").evaluate_all("cards => cards.map(c => c.getBoundingClientRect().top)")
    assert tops.count(tops[0]) >= 9, "nine or more photos a row at 1920 px"


def test_a_long_name_is_cut_with_an_ellipsis_and_shown_whole_on_focus(
    open_page: OpenPage, long_names: dict[str, int], tmp_path: Path
) -> None:
    page = open_page(PHONE)
    show(page, "library", long_names, tmp_path)
    name = page.locator(f'#results .card[data-id="{long_names[LONG_NAME]}"] .name')
    assert name.get_attribute("title") == LONG_NAME
    assert name.inner_text() == LONG_NAME
    assert name.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    assert name.evaluate("e => e.scrollWidth > e.clientWidth"), "cut to one line"
    one_line = name.bounding_box()
    name.focus()
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth"), "whole when focused"
    whole = name.bounding_box()
    assert one_line and whole and whole["height"] > 2 * one_line["height"]


def test_duplicates_sit_side_by_side_in_a_row_that_scrolls_sideways(
    open_page: OpenPage, long_names: dict[str, int], tmp_path: Path
) -> None:
    page = open_page(PHONE)
    show(page, "duplicates", long_names, tmp_path)
    row = page.locator(".members", has=page.locator(f'.member[data-id="{long_names[LONG_NAME]}"]'))
    boxes = row.locator(".member").evaluate_all("ms => ms.map(m => m.getBoundingClientRect().top)")
    assert len(boxes) >= 3 and len(set(boxes)) == 1, "one row"
    assert row.evaluate("r => getComputedStyle(r).overflowX") == "auto"
    assert row.evaluate("r => r.scrollWidth > r.clientWidth"), "the row scrolls to show the rest"
    row.evaluate("r => r.scrollTo({left: r.scrollWidth})")
    last = row.locator(".member").last.bounding_box()
    assert last and last["x"] + last["width"] <= PHONE["width"], "the last member can be scrolled into view"


# Relative luminance and contrast ratio as WCAG 2 defines them, of the colours the browser computed: each text
# element's colour against the background it is drawn on (the nearest ancestor's, half-transparent ones blended).
CONTRASTS = """() => {
    const parse = (c) => {
        const m = c.match(/[\\d.]+/g).map(Number);
        return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
    };
    const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3])).concat(1);
    const lum = (rgb) => {
        const [r, g, b] = rgb.slice(0, 3).map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const background = (el) => {
        const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const c = parse(getComputedStyle(e).backgroundColor);
            if (c[3] > 0) layers.push(c);
            if (c[3] === 1) break;
        }
        let color = [255, 255, 255, 1];
        for (const layer of layers.reverse()) color = over(layer, color);
        return color;
    };
    const out = [];
    for (const el of document.querySelectorAll("body *")) {
        const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!text || !el.checkVisibility() || el.closest("[disabled], .disabled, .badge, option")) continue;
        const fg = over(parse(getComputedStyle(el).color), background(el));
        const [a, b] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
        out.push({ text: el.textContent.trim().slice(0, 40), ratio: (a + 0.05) / (b + 0.05), cls: el.className });
    }
    return out;
}"""


# The messages a view shows only after something happens (an error, an undo, a trashed image), drawn with the
# page's own classes so that their colours are measured too.
SAMPLE_MESSAGES = """main => main.insertAdjacentHTML("beforeend", `
    <div class="status error">Something went wrong (HTTP 500)</div>
    <div class="status ok">Moved to the trash. <button class="undo">Undo</button></div>
    <div class="status busy"><span class="spinner"></span>Loading…</div>
    <p class="message trashed">This image is in the trash.</p>
    <p class="message ok">Deleted for good.</p>
    <div class="controls"><button class="danger">Delete for good…</button><button class="secondary">Cancel</button>
      <a class="button" href="#">Search similar</a><input value="typed text"></div>
    <figure class="card"><figcaption><span class="score">similarity 0.9 <span class="copy">· copy</span></span>
      </figcaption></figure>`)"""


def page_colours(page: Page) -> tuple[str, str]:
    return page.evaluate("[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]")


def luminance_of(css: str) -> float:
    """WCAG 2's relative luminance of an `rgb(...)` colour: 0 for black, 1 for white."""
    channels = (int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()[:3])
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_page_is_dark_when_the_system_is(open_page: OpenPage, site: Site) -> None:
    light, dark = open_page(color_scheme="light"), open_page(color_scheme="dark")
    for page in (light, dark):
        page.goto("/library")
        page.locator("#results .card").first.wait_for()
    (light_bg, light_fg), (dark_bg, dark_fg) = page_colours(light), page_colours(dark)
    assert luminance_of(light_bg) > 0.8 and luminance_of(light_fg) < 0.1
    assert luminance_of(dark_bg) < 0.05 and luminance_of(dark_fg) > 0.6
    card = dark.locator("#results .card").first.evaluate("c => getComputedStyle(c).backgroundColor")
    assert luminance_of(card) < 0.05, "cards are dark too"


@pytest.mark.parametrize("system", ["light", "dark"])
def test_the_toggle_switches_the_theme_and_is_remembered(open_page: OpenPage, system: str) -> None:
    page = open_page(DESKTOP, color_scheme=system)
    page.goto("/library")
    toggle = page.get_by_role("button", name="Dark theme")
    expect(toggle).to_have_attribute("aria-pressed", str(system == "dark").lower())
    before = page_colours(page)[0]
    toggle.click()
    other = "light" if system == "dark" else "dark"
    expect(toggle).to_have_attribute("aria-pressed", str(other == "dark").lower())
    after = page_colours(page)[0]
    assert (luminance_of(after) < 0.05) == (other == "dark") and after != before
    page.reload()
    toggle = page.get_by_role("button", name="Dark theme")
    expect(toggle).to_have_attribute("aria-pressed", str(other == "dark").lower())
    assert page_colours(page)[0] == after, "remembered after a reload"
    page.goto("/library/trash")
    assert page_colours(page)[0] == after, "and on the other views"


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("view", VIEWS)
def test_text_reads_at_4_5_to_1_or_more_in_both_themes(
    open_page: OpenPage, long_names: dict[str, int], tmp_path: Path, view: str, theme: str
) -> None:
    page = open_page(DESKTOP, color_scheme=theme)
    show(page, view, long_names, tmp_path)
    page.locator("main").evaluate(SAMPLE_MESSAGES)
    measured = page.evaluate(CONTRASTS)
    assert len(measured) > 10
    low = [m for m in measured if m["ratio"] < 4.5]
    assert low == [], low
