"""The duplicates view in Chromium against the real service: the threshold field, similar photos with nothing
chosen, moving copies to the trash with Undo, "Keep all" (not duplicates) with Undo and the list of decisions,
and resolving every exact group behind one confirmation that lists each file going to the trash."""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.conftest import IMAGES_DIR
from tests.web.conftest import Site

pytestmark = pytest.mark.browser


def cat_group(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".group", has=page.locator(".member .name", has_text=re.compile(r"^cat\.png$")))


def trash_ids(site: Site) -> list[int]:
    return [i["id"] for i in httpx.get(f"{site.url}/trash", params={"limit": 1000}).json()["items"]]


def live(site: Site, image_id: int) -> bool:
    return httpx.get(f"{site.url}/images/{image_id}").json()["trashed_at"] is None


def test_the_threshold_field_is_used_instead_of_the_level_and_the_page_says_so(page: Page) -> None:
    page.goto("/library/duplicates")
    expect(page.locator("#summary")).to_contain_text("at the near level")
    page.fill("input[name=threshold]", "0.9")
    page.click("#dup-form button[type=submit]")
    page.wait_for_url(re.compile(r"threshold=0\.9"))
    assert parse_qs(urlparse(page.url).query) == {"threshold": ["0.9"]}
    expect(page.locator("#summary")).to_contain_text("at your threshold 0.9 (the level is not used)")
    expect(page.locator(".status.error")).to_have_count(0)
    expect(page.locator(".group").first).to_be_visible()
    # Choosing a level again means that level.
    page.select_option("select[name=level]", "exact")
    assert page.input_value("input[name=threshold]") == ""
    page.click("#dup-form button[type=submit]")
    page.wait_for_url(re.compile(r"level=exact"))
    expect(page.locator("#summary")).to_contain_text("at the exact level")


def test_similar_photos_have_nothing_chosen_for_the_trash_until_one_is_kept(page: Page) -> None:
    page.goto("/library/duplicates?level=similar")
    group = cat_group(page)
    expect(group).to_have_count(1)
    expect(group.locator("h2")).to_contain_text("similar photos")
    assert page.locator(".member.kept").count() == 0 and page.locator(".member.doomed").count() == 0
    assert "to the trash" not in " ".join(page.locator(".keep-label").all_inner_texts())
    button = group.get_by_role("button", name=re.compile("to the trash"))
    expect(button).to_be_disabled()
    group.locator(".member", has_text="cat.png").first.locator("input[type=radio]").check()
    expect(button).to_be_enabled()
    expect(group.locator(".member.doomed").first).to_contain_text("to the trash")


def test_long_file_names_are_shown_whole(page: Page, site: Site) -> None:
    long_name = "holiday 2023 - the cat on the sofa, from the camera roll IMG_20230704_181512_edited.jpg"
    with Image.open(IMAGES_DIR / "cat.png") as cat:
        small = io.BytesIO()
        cat.convert("RGB").resize((cat.width // 2, cat.height // 2)).save(small, "JPEG", quality=90)
    answer = httpx.post(f"{site.url}/ingest", files=[("files", (long_name, small.getvalue()))], timeout=120)
    image_id = answer.json()["results"][0]["id"]
    try:
        page.goto("/library/duplicates?level=near")
        name = page.locator(f'.member[data-id="{image_id}"] .name')
        expect(name).to_be_visible()
        assert name.get_attribute("title") == long_name
        assert name.inner_text().replace("\n", " ").replace("  ", " ") == long_name
        assert name.evaluate("e => e.scrollWidth <= e.clientWidth"), "nothing is cut off"
    finally:
        httpx.delete(f"{site.url}/images/{image_id}")
        httpx.delete(f"{site.url}/trash/{image_id}")


def test_moving_the_others_to_the_trash_says_so_and_undo_restores_them(page: Page, site: Site) -> None:
    page.goto("/library/duplicates?level=near")
    group = cat_group(page)
    expect(group).to_have_count(1)
    assert group.locator(".member.kept").count() == 1, "the suggested image to keep is marked"
    names = group.locator(".member .name").all_inner_texts()
    moved = [site.ids[n] for n in names if n != "cat.png"]
    assert moved

    group.locator(".member", has_text="cat.png").first.locator("input[type=radio]").check()
    group.get_by_role("button", name=re.compile(r"Move the other \d+ to the trash")).click()
    status = group.locator(".group-status")
    expect(status).to_contain_text("to the trash")
    expect(status).to_contain_text("kept cat.png")
    expect(group.locator(".member")).to_have_count(1)
    assert sorted(trash_ids(site)) == sorted(moved)
    kept = httpx.get(f"{site.url}/images/{site.ids['cat.png']}").json()
    assert sorted(r["name"] for r in kept["replaced"]) == sorted(n for n in names if n != "cat.png")

    status.get_by_role("button", name="Undo").click()
    expect(cat_group(page).locator(".member")).to_have_count(len(names))
    assert trash_ids(site) == [] and all(live(site, i) for i in moved)


def test_keep_all_marks_a_group_not_duplicates_and_it_can_be_undone_twice_over(page: Page, site: Site) -> None:
    page.goto("/library/duplicates?level=near")
    group = cat_group(page)
    expect(group.locator(".member").first).to_be_visible()
    count = group.locator(".member").count()
    assert count > 1
    group.get_by_role("button", name="Keep all").click()
    expect(group.locator(".group-status")).to_contain_text(f"Kept all {count}")
    decisions = httpx.get(f"{site.url}/duplicates/dismissed").json()
    assert decisions["total"] == 1 and len(decisions["items"][0]["images"]) == count
    expect(page.locator("#decisions li")).to_have_count(1)
    assert trash_ids(site) == []

    # Undo right after: the group is back, the decision gone.
    group.locator(".group-status").get_by_role("button", name="Undo").click()
    expect(cat_group(page).get_by_role("button", name="Keep all")).to_be_visible()
    expect(page.locator("#decisions-section")).to_be_hidden()
    assert httpx.get(f"{site.url}/duplicates/dismissed").json()["total"] == 0

    # Kept all again: after a reload the group is gone, at every level; undone from the list, it is back.
    cat_group(page).get_by_role("button", name="Keep all").click()
    expect(cat_group(page).locator(".group-status")).to_contain_text("Kept all")
    for level in ("exact", "near", "similar"):
        page.goto(f"/library/duplicates?level={level}")
        expect(page.locator("#summary")).to_contain_text(f"{level} level")
        expect(cat_group(page)).to_have_count(0)
    item = page.locator("#decisions li").first
    expect(item).to_contain_text("cat.png")
    item.get_by_role("button", name="Undo").click()
    expect(page.locator("#decisions-section")).to_be_hidden()
    expect(cat_group(page)).to_have_count(1)


def test_resolving_every_exact_group_lists_each_file_in_one_confirmation(page: Page, site: Site) -> None:
    with Image.open(IMAGES_DIR / "coffee.jpg") as coffee:  # an exact copy: the same pixels, saved as PNG
        copy = io.BytesIO()
        coffee.save(copy, "PNG")
    added = httpx.post(f"{site.url}/ingest", files=[("files", ("coffee (copy).png", copy.getvalue()))], timeout=120)
    assert added.status_code == 200, added.text
    groups = httpx.get(f"{site.url}/duplicates", params={"level": "exact", "limit": 1000}).json()["groups"]
    going = sorted(i["filename"] for g in groups if len(g["images"]) > 1 for i in g["images"] if i["id"] != g["keep"])
    # The same pixels twice: one of the two goes (the larger file is kept).
    assert {"coffee (copy).png", "coffee.jpg"} & set(going)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)

    page.goto("/library/duplicates?level=near")
    page.get_by_role("button", name="Resolve all exact groups…").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text(f"move {len(going)} file")
    listed = dialog.locator(".confirm-list li").all_inner_texts()
    assert sorted(t.split(" (a copy of ")[0] for t in listed) == going
    dialog.get_by_role("button", name="Cancel").click()
    assert requests == [] and trash_ids(site) == []

    page.get_by_role("button", name="Resolve all exact groups…").click()
    dialog.get_by_role("button", name="Move to the trash").click()
    expect(page.locator("#status")).to_contain_text(f"Moved {len(going)} file")
    assert sorted(httpx.get(f"{site.url}/images/{i}").json()["filename"] for i in trash_ids(site)) == going
    assert httpx.get(f"{site.url}/duplicates", params={"level": "exact"}).json()["total"] == 0

    page.locator("#status").get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_contain_text(f"Restored {len(going)} file")
    assert trash_ids(site) == []


def test_an_error_from_the_duplicates_api_is_shown_as_a_message(page: Page) -> None:
    page.goto("/library/duplicates?level=no-such-level")
    expect(page.locator(".status.error")).to_be_visible()
    expect(page.locator(".status.busy")).to_have_count(0)


def test_each_group_says_why_it_is_one_and_what_the_pixels_showed(page: Page) -> None:
    page.goto("/library/duplicates?level=near")
    group = cat_group(page)
    expect(group).to_have_count(1)
    expect(group.locator(".reason")).to_contain_text("copies of one capture")
    proofs = group.locator(".member .evidence").all_inner_texts()
    # The kept image has no evidence of its own; each copy says it was proven one (mirrored for cat_mirror).
    assert proofs and all(p.startswith(("copy", "mirrored copy", "identical")) for p in proofs), proofs
    mirrored = group.locator(".member", has=page.locator(".name", has_text="cat_mirror.png"))
    expect(mirrored.locator(".evidence")).to_contain_text("mirrored copy")
