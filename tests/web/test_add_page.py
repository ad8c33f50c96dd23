"""Add images in Chromium against the real service: cancelling an upload, leaving the page during one, and
retrying the files that failed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, Route, expect

from tests.web.conftest import MAX_FILES_PER_REQUEST, Site
from tests.web.sample import derived_photos

pytestmark = pytest.mark.browser


def stored_count(site: Site) -> int:
    count: int = httpx.get(f"{site.url}/stats").json()["count"]
    return count


class HeldUploads:
    """Lets the first `passing` requests to /ingest through and holds the others until released."""

    def __init__(self, page: Page, passing: int) -> None:
        self.passing = passing
        self.held: list[Route] = []
        page.route("**/ingest", self._handle)

    def _handle(self, route: Route) -> None:
        if self.passing > 0:
            self.passing -= 1
            route.continue_()
        else:
            self.held.append(route)


def test_cancelling_an_upload_keeps_what_was_stored_and_retry_sends_the_rest(
    page: Page, site: Site, tmp_path: Path
) -> None:
    photos = derived_photos(tmp_path, 2 * MAX_FILES_PER_REQUEST + 1, start=20)
    before = stored_count(site)
    uploads = HeldUploads(page, passing=1)
    page.goto("/library/add")
    page.set_input_files("#files", photos)
    rows = page.locator("#file-list tbody tr")
    expect(rows.filter(has_text="added")).to_have_count(MAX_FILES_PER_REQUEST, timeout=180_000)
    expect(rows.filter(has_text="uploading")).to_have_count(MAX_FILES_PER_REQUEST)

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_contain_text("Cancelled: the files stored before then stay stored")
    summary = f"{MAX_FILES_PER_REQUEST} added · 0 already stored · 0 failed · 5 cancelled"
    expect(page.locator("#summary")).to_have_text(summary)
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    assert stored_count(site) == before + MAX_FILES_PER_REQUEST
    assert len(uploads.held) == 1  # the second request never reached the server; the third was never sent

    uploads.passing = 10
    page.get_by_role("button", name="Retry failed (5)").click()
    expect(page.locator("#summary")).to_have_text(f"{len(photos)} added · 0 already stored · 0 failed", timeout=180_000)
    expect(page.get_by_role("button", name="Retry failed")).to_be_hidden()
    expect(rows).to_have_count(len(photos))
    assert stored_count(site) == before + len(photos)


def test_files_that_failed_are_sent_again_by_retry_failed(page: Page, site: Site, tmp_path: Path) -> None:
    photos = derived_photos(tmp_path, 2, start=40)
    before = stored_count(site)
    page.goto("/library/add")
    page.route("**/ingest", lambda route: route.abort("connectionrefused"))
    page.set_input_files("#files", photos)
    expect(page.locator("#status")).to_contain_text("Stopped: Cannot reach the server")
    expect(page.locator("#summary")).to_have_text("0 added · 0 already stored · 2 failed")
    assert stored_count(site) == before

    page.unroute("**/ingest")
    page.get_by_role("button", name="Retry failed (2)").click()
    expect(page.locator("#summary")).to_have_text("2 added · 0 already stored · 0 failed", timeout=180_000)
    assert stored_count(site) == before + 2


def test_leaving_the_page_mid_upload_asks_first(page: Page, tmp_path: Path) -> None:
    photos = derived_photos(tmp_path, 2, start=50)
    dialogs: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", answer)
    uploads = HeldUploads(page, passing=0)
    page.goto("/library/add")
    page.locator("h1").click()  # a person's gesture: Chromium asks before unloading only a page used
    page.set_input_files("#files", photos)
    expect(page.locator("#file-list tbody tr", has_text="uploading")).to_have_count(2)
    with page.expect_event("dialog"):
        page.close(run_before_unload=True)
    assert dialogs == ["beforeunload"]
    assert not page.is_closed()

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#summary")).to_contain_text("2 cancelled")
    page.close(run_before_unload=True)
    page.wait_for_event("close")
    assert dialogs == ["beforeunload"]
    assert len(uploads.held) == 1
