"""The web page in Chromium against the real service: search, library, add, delete, errors."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.conftest import CAT_VARIANTS, IMAGES_DIR
from tests.web.conftest import MAX_FILES_PER_REQUEST, Site
from tests.web.sample import derived_photos

pytestmark = pytest.mark.browser

CATS = CAT_VARIANTS | {"cat.png"}


def card_names(page: Page, selector: str = "#results .card") -> list[str]:
    return page.locator(f"{selector} .name").all_inner_texts()


def card_scores(page: Page) -> list[float]:
    """The scores of the result cards that are not marked as copies (copies come first, by their own order)."""
    texts = page.locator("#results .card .score").all_inner_texts()
    return [float(t.split()[1]) for t in texts if "copy" not in t]


def copy_count(page: Page) -> int:
    return sum("copy" in t for t in page.locator("#results .card .score").all_inner_texts())


# Every thumbnail of the grid has arrived and decoded (a broken image has naturalWidth 0).
ALL_THUMBNAILS_SHOWN = """() => {
    const imgs = [...document.querySelectorAll('#results .card img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def api_names(site: Site, **params: object) -> list[str]:
    listing = httpx.get(f"{site.url}/images", params={"limit": 1000, **params}).json()
    return [item["filename"] for item in listing["items"]]


def test_the_page_is_served_at_the_root_with_its_own_assets(page: Page, site: Site) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/")
    expect(page.get_by_role("heading", name="Search by image")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert requests and all(url.startswith(site.url) for url in requests), "every asset comes from the service"
    expect(page.locator("#library-count")).to_contain_text(f"{len(site.ids)} images")


def test_searching_with_an_uploaded_photo_shows_ranked_thumbnails(page: Page, tmp_path: Path) -> None:
    query = tmp_path / "my cat.jpg"
    with Image.open(IMAGES_DIR / "cat.png") as cat:
        cat.convert("RGB").crop((40, 30, 420, 330)).save(query, "JPEG", quality=80)
    page.goto("/")
    page.set_input_files("#file", query)
    expect(page.locator("#query")).to_contain_text("my cat.jpg")
    expect(page.locator("#results .card")).to_have_count(10)
    names, scores = card_names(page), card_scores(page)
    assert set(names[:5]) == CATS, names
    assert scores == sorted(scores, reverse=True)
    assert copy_count(page) >= 1  # the crop is a near-duplicate of cat.png: marked, and first
    page.wait_for_function(ALL_THUMBNAILS_SHOWN)


def test_find_similar_on_a_result_searches_by_it_and_the_address_keeps_the_search(page: Page, site: Site) -> None:
    page.goto(f"/?ref={site.ids['cat.png']}&k=5&metric=euclidean&label=")
    expect(page.locator("#results .card")).to_have_count(5)
    assert set(card_names(page)[:4]) == CAT_VARIANTS
    distances = card_scores(page)
    assert distances == sorted(distances), "euclidean: closest (smallest distance) first"

    clicked = card_names(page)[4]
    page.locator("#results .card").nth(4).locator("a.thumb").click()
    page.locator("#viewer").get_by_role("button", name="Find similar").click()
    expect(page.locator("#query")).to_contain_text(clicked)
    query = parse_qs(urlparse(page.url).query)
    assert query["ref"] == [str(site.ids[clicked])] and query["k"] == ["5"] and query["metric"] == ["euclidean"]
    expect(page.locator("#results .card")).to_have_count(5)
    after_click = card_names(page)
    assert clicked not in after_click

    page.reload()
    expect(page.locator("#query")).to_contain_text(clicked)
    expect(page.locator("#results .card")).to_have_count(5)
    assert card_names(page) == after_click
    assert page.locator("select[name=metric]").input_value() == "euclidean"

    page.go_back()
    expect(page.locator("#query")).to_contain_text("cat.png")
    expect(page.locator("#results .card").first).to_contain_text("cat_")


def test_changing_the_number_of_results_searches_again(page: Page, site: Site) -> None:
    page.goto(f"/?ref={site.ids['rocket.jpg']}")
    expect(page.locator("#results .card")).to_have_count(10)
    page.fill("input[name=k]", "3")
    page.press("input[name=k]", "Enter")
    expect(page.locator("#results .card")).to_have_count(3)
    assert parse_qs(urlparse(page.url).query)["k"] == ["3"]


def test_the_library_pages_through_every_image_with_the_total(page: Page, site: Site) -> None:
    expected = api_names(site)
    page.goto("/library?limit=4")
    seen: list[str] = []
    while True:
        expect(page.locator("#results .card").first).to_be_visible()
        expect(page.locator("#summary")).to_contain_text(f"of {len(expected)} images")
        seen += card_names(page)
        page.wait_for_function(ALL_THUMBNAILS_SHOWN)
        next_link = page.locator("#pager a[rel=next]")
        if next_link.count() == 0:
            break
        next_link.click()
        page.wait_for_url(re.compile(r"offset=\d+"))
    assert seen == expected
    expect(page.locator("#pager")).to_contain_text(f"of {(len(expected) + 3) // 4}")


def test_the_library_filters_by_name_and_label(page: Page) -> None:
    page.goto("/library")
    page.fill("input[name=name]", "cat")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("5 matching images")
    assert set(card_names(page)) == CATS
    page.goto("/library?label=espresso")
    expect(page.locator("#results .card")).to_have_count(1)
    assert card_names(page) == ["coffee.jpg"]


def test_the_label_field_suggests_words_and_a_word_filters_to_its_classes(page: Page) -> None:
    page.goto("/library")
    page.locator("input[name=label]").press_sequentially("dog")
    suggestions = page.locator("#label-words option")
    expect(suggestions.first).to_have_attribute("value", "dog")
    expect(suggestions.first).to_have_attribute("label", "dog (118 classes)")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("0 matching images")  # no sample photo shows a dog
    expect(page.locator(".message.error")).to_have_count(0)
    page.fill("input[name=label]", "cat")
    page.click("#filter-form button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("5 matching images")
    assert set(card_names(page)) == CATS
    page.goto("/?ref=coffee.jpg&k=20&label=cats")
    expect(page.locator("#results .card")).to_have_count(len(CATS))
    assert set(card_names(page)) == CATS


def test_find_similar_on_a_library_image_searches_by_it(page: Page, site: Site) -> None:
    page.goto("/library")
    page.locator("#results .card", has_text="rocket.jpg").locator("a.thumb").click()
    page.locator("#viewer").get_by_role("button", name="Find similar").click()
    expect(page.locator("#query")).to_contain_text("rocket.jpg")
    assert parse_qs(urlparse(page.url).query)["ref"] == [str(site.ids["rocket.jpg"])]
    expect(page.locator("#results .card").first).to_be_visible()


def test_adding_files_from_the_page_uploads_in_batches_and_reports_each_file(
    page: Page, site: Site, tmp_path: Path
) -> None:
    fresh = derived_photos(tmp_path / "new", MAX_FILES_PER_REQUEST + 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((IMAGES_DIR / "coffee.jpg").read_bytes()[:300])
    files = [fresh[0], IMAGES_DIR / "cat.png", broken, *fresh[1:]]
    before = httpx.get(f"{site.url}/stats").json()["count"]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)

    page.goto("/library/add")
    page.set_input_files("#files", files)
    expect(page.locator("#progress-text")).to_have_text(f"{len(files)} of {len(files)} files", timeout=180_000)
    expect(page.locator("#summary")).to_have_text(f"{len(fresh)} added · 1 already stored · 1 failed")
    rows = page.locator("#file-list tbody tr")
    expect(rows).to_have_count(len(files))
    statuses = {r[0]: r[1] for r in (row.split("\t") for row in rows.all_inner_texts())}
    assert statuses["cat.png"] == "already stored"
    assert statuses["broken.jpg"] == "error"
    assert all(statuses[p.name] == "added" for p in fresh)
    expect(page.locator("#file-list tbody tr", has_text="broken.jpg")).to_contain_text("HTTP 422")

    assert httpx.get(f"{site.url}/stats").json()["count"] == before + len(fresh)
    # 8 files at 4 a request: 2 batches; the one holding the broken file is sent again file by file.
    assert len(requests) == 2 + MAX_FILES_PER_REQUEST


def test_moving_to_the_trash_from_the_detail_page_offers_undo_and_deleting_for_good_asks_first(
    page: Page, site: Site, tmp_path: Path
) -> None:
    photo = derived_photos(tmp_path, 1, start=7)[0]
    answer = httpx.post(f"{site.url}/ingest", files=[("files", (photo.name, photo.read_bytes()))]).json()
    image_id = answer["results"][0]["id"]

    page.goto(f"/library/{image_id}")
    expect(page.locator("#detail-title")).to_have_text(photo.name)
    expect(page.locator("#detail .facts")).to_contain_text("JPEG")
    expect(page.locator("#neighbours .card").first).to_be_visible()
    page.get_by_role("button", name="Move to the trash").click()
    expect(page.locator("#status")).to_contain_text(f"Moved {photo.name} to the trash")
    expect(page.locator(".message.trashed")).to_contain_text("In the trash since")
    assert httpx.get(f"{site.url}/images/{image_id}").json()["trashed_at"] is not None
    assert photo.name not in api_names(site)

    page.locator("#status").get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_contain_text(f"Restored {photo.name}")
    expect(page.get_by_role("button", name="Move to the trash")).to_be_visible()
    assert httpx.get(f"{site.url}/images/{image_id}").json()["trashed_at"] is None
    assert photo.name in api_names(site)

    page.get_by_role("button", name="Move to the trash").click()
    page.get_by_role("button", name="Delete for good…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text(photo.name)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert httpx.get(f"{site.url}/images/{image_id}").status_code == 200
    page.get_by_role("button", name="Delete for good…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator("#detail")).to_contain_text(f"Deleted {photo.name} for good")
    assert httpx.get(f"{site.url}/images/{image_id}").status_code == 404
    assert httpx.get(f"{site.url}/images/{image_id}/thumbnail").status_code == 404


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/?ref=no-such-image.jpg", "no stored image"),
        ("/library?label=not-a-class", "no ImageNet class is called"),
        ("/library/999999", "no image with id 999999"),
    ],
)
def test_an_api_error_is_shown_as_a_readable_message(page: Page, path: str, message: str) -> None:
    page.goto(path)
    error = page.locator(".status.error")
    expect(error).to_contain_text(message, ignore_case=True)
    expect(page.locator(".status.busy")).to_have_count(0)


def test_a_server_that_cannot_be_reached_is_reported_not_left_spinning(page: Page, site: Site) -> None:
    page.goto("/")
    page.route("**/search?**", lambda route: route.abort("connectionrefused"))
    page.fill("input[name=ref]", "cat.png")
    page.click("#search-form button[type=submit]")
    expect(page.locator(".status.error")).to_contain_text("Cannot reach the server")
    expect(page.locator(".status.busy")).to_have_count(0)


def test_files_are_split_into_requests_within_the_servers_limits(page: Page) -> None:
    page.goto("/library/add")
    plan = page.evaluate(
        """async () => {
            const { planBatches } = await import('/static/batches.js');
            const item = (name, size) => ({ file: { name, size }, path: name });
            const items = [item('a', 400), item('b', 400), item('c', 5000), item('d', 100), item('e', 100),
                           item('f', 100), item('g', 100)];
            const { batches, tooLarge } = planBatches(items, 3, 2000);
            return { batches: batches.map(b => b.map(i => i.path)), tooLarge: tooLarge.map(i => i.path) };
        }"""
    )
    # 2000 bytes a request with about 514 bytes of multipart framing per file: a and b fill one request,
    # c can never be sent, and d, e, f, g go at most 3 a request.
    assert plan == {"batches": [["a", "b"], ["d", "e", "f"], ["g"]], "tooLarge": ["c"]}
