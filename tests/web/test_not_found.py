"""An address with no page: a browser gets a 404 page in the site's style with a way home; an API client
keeps the JSON answer."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site

pytestmark = pytest.mark.browser

MISSING = ["/library/abc", "/library/0", "/no/such/page"]


@pytest.mark.parametrize("path", MISSING)
def test_a_browser_gets_a_not_found_page_with_a_link_home(page: Page, site: Site, path: str) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator("main")).to_contain_text(f"There is no page at {path}")
    expect(page.locator("#library-count")).to_contain_text(f"{len(site.ids)} images")
    # The site's own style sheet is applied (the header is laid out as on every page).
    assert page.locator("header.top").evaluate("h => getComputedStyle(h).display") == "flex"

    page.get_by_role("link", name="Go to Search").click()
    expect(page.get_by_role("heading", name="Search by image")).to_be_visible()


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
@pytest.mark.parametrize("path", MISSING)
def test_an_api_client_still_gets_json(site: Site, path: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(f"{site.url}{path}", headers=headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_an_unknown_image_in_the_api_stays_json_for_a_browser_too(site: Site) -> None:
    response = httpx.get(f"{site.url}/images/999999", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.json() == {"detail": "no image with id 999999"}
