"""The pages and the docs under their Content-Security-Policy, in Chromium: nothing they need is refused,
another site cannot frame them, and stored bytes are served with nosniff."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.mark.parametrize("path", ["/", "/library", "/library/add", "/library/duplicates", "/docs", "/redoc"])
def test_every_page_works_under_its_policy(page: Page, site: Site, path: str) -> None:
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto(path)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and response.headers["x-frame-options"] == "DENY"
    page.wait_for_load_state("networkidle")
    if path == "/docs":
        page.locator(".opblock").first.wait_for()
    # Refused on purpose: anything from another host (ReDoc's sidebar credit fetches its logo from its CDN).
    refused = [v for v in page.evaluate("window.__violations") if not v.split(" ", 1)[1].startswith("https://")]
    assert refused == []
    assert not [text for text in console if "Content Security Policy" in text and "https://" not in text]


def test_the_detail_page_draws_its_prediction_bars_under_the_policy(page: Page, site: Site) -> None:
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"/library/{site.ids['coffee.jpg']}")
    bar = page.locator(".predictions .bar").first
    expect(bar).to_be_visible()
    assert bar.evaluate("(b) => b.getBoundingClientRect().width") > 10
    assert page.evaluate("window.__violations") == []


def test_another_site_cannot_frame_the_page(page: Page, site: Site) -> None:
    page.goto("about:blank")
    page.set_content(f'<iframe src="{site.url}/library"></iframe>')
    page.wait_for_timeout(1500)
    (child,) = [f for f in page.frames if f != page.main_frame]
    assert child.url == "chrome-error://chromewebdata/"  # Chromium refused to show it there


def test_stored_bytes_and_thumbnails_are_served_with_nosniff(site: Site) -> None:
    image_id = site.ids["cat.png"]
    for path in (f"/images/{image_id}/content", f"/images/{image_id}/thumbnail", "/images", "/static/api.js"):
        assert httpx.get(f"{site.url}{path}").headers["x-content-type-options"] == "nosniff", path
