"""The duplicates view in Chromium against the real service (GET /duplicates)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site

pytestmark = pytest.mark.browser


def test_duplicates_are_shown_side_by_side_and_all_but_the_chosen_one_are_deleted(page: Page, site: Site) -> None:
    page.goto("/library/duplicates?level=near")
    group = page.locator(".group", has=page.locator(".member .name", has_text="cat.png"))
    expect(group).to_have_count(1)
    members = group.locator(".member")
    expect(members.first).to_be_visible()
    assert group.locator(".member.kept").count() == 1, "the suggested image to keep is marked"
    names = members.locator(".name").all_inner_texts()
    assert "cat.png" in names and len(names) >= 2
    doomed = [site.ids[name] for name in names if name != "cat.png"]

    group.locator(".member", has_text="cat.png").locator("input[type=radio]").check()
    expect(group.locator(".member.kept")).to_contain_text("cat.png")
    group.get_by_role("button", name="Delete the other").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Keep cat.png")
    dialog.get_by_role("button", name="Delete").click()
    expect(group.locator(".group-status")).to_contain_text("kept cat.png")
    expect(group.locator(".member")).to_have_count(1)

    assert httpx.get(f"{site.url}/images/{site.ids['cat.png']}").status_code == 200
    assert all(httpx.get(f"{site.url}/images/{image_id}").status_code == 404 for image_id in doomed)


def test_an_error_from_the_duplicates_api_is_shown_as_a_message(page: Page) -> None:
    page.goto("/library/duplicates?level=no-such-level")
    expect(page.locator(".status.error")).to_be_visible()
    expect(page.locator(".status.busy")).to_have_count(0)
