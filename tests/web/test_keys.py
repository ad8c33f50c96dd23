"""The web page on a server with API keys, in Chromium: it asks for a key, trades it for an HttpOnly session
cookie, and from then on no request carries the key (not the API calls, not the images, not the Download
link); a read key that tries to change the library is asked for a write key; the key can be changed and
forgotten; and the access log never holds a key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.app.server import running_server
from tests.conftest import IMAGES_DIR
from tests.web.sample import VIEWPORT

pytestmark = pytest.mark.browser

READ_KEY, WRITE_KEY = "reader s3cret", "writer s3cret"
PHOTOS = ("cat.png", "coffee.jpg", "rocket.jpg", "astronaut.jpg")


@dataclass(frozen=True)
class LockedSite:
    url: str
    log: Path
    ids: dict[str, int]


@pytest.fixture(scope="module")
def locked_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockedSite]:
    tmp = tmp_path_factory.mktemp("keys")
    env = {"IMGSIM_API_KEYS": f"{READ_KEY}:read,{WRITE_KEY}:write"}
    with running_server(tmp / "data", tmp / "server.log", **env) as url:
        files = [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in PHOTOS]
        answer = httpx.post(f"{url}/ingest", files=files, headers={"X-API-Key": WRITE_KEY}, timeout=300)
        answer.raise_for_status()
        yield LockedSite(url, tmp / "server.log", {r["filename"]: r["id"] for r in answer.json()["results"]})


@pytest.fixture
def locked_page(browser: Browser, locked_site: LockedSite) -> Iterator[Page]:
    context = browser.new_context(base_url=locked_site.url, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


THUMBNAILS_SHOWN = """() => {
    const imgs = [...document.querySelectorAll('#results .card img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def enter_key(page: Page, key: str) -> None:
    prompt = page.locator("#api-key-prompt")
    expect(prompt).to_be_visible()
    prompt.locator("input[name=key]").fill(key)
    with page.expect_navigation():
        prompt.get_by_role("button", name="Use this key").click()


def test_the_page_asks_once_then_no_request_url_or_header_carries_the_key(
    locked_page: Page, locked_site: LockedSite
) -> None:
    page = locked_page
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))
    page.goto("/library")
    expect(page.locator("#api-key-prompt .prompt-text")).to_have_text("This server needs an API key:")
    page.locator("#api-key-prompt input[name=key]").fill("not the key")
    page.locator("#api-key-prompt").get_by_role("button", name="Use this key").click()
    expect(page.locator("#api-key-prompt .hint")).to_have_text("That key is not valid here.")  # and it stays
    enter_key(page, READ_KEY)
    page.wait_for_function(THUMBNAILS_SHOWN)
    page.goto(f"/library/{locked_site.ids['coffee.jpg']}")
    expect(page.locator("#detail .original img")).to_be_visible()
    page.wait_for_load_state("networkidle")

    (cookie,) = [c for c in page.context.cookies() if c["name"] == "imgsim_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"
    download = page.locator("#detail a[download]").get_attribute("href")
    assert download == f"/images/{locked_site.ids['coffee.jpg']}/content"
    for request in sent:
        assert "s3cret" not in request.url and "api_key" not in request.url, request.url
        keyed = request.headers.get("x-api-key")
        assert keyed is None or (request.method, request.url) == ("POST", f"{locked_site.url}/session"), request.url
    assert any(r.url.endswith("/thumbnail") for r in sent)
    log = locked_site.log.read_text()
    assert "s3cret" not in log and "/session" in log


def test_a_read_key_that_tries_to_move_an_image_to_the_trash_is_asked_for_a_write_key(
    locked_page: Page, locked_site: LockedSite
) -> None:
    page = locked_page
    page.goto("/library")
    enter_key(page, READ_KEY)
    expect(page.locator("#key-controls .key-scope")).to_have_text("read key")
    page.goto(f"/library/{locked_site.ids['rocket.jpg']}")
    page.get_by_role("button", name="Move to the trash").click()
    expect(page.locator("#api-key-prompt .prompt-text")).to_contain_text("use a write key")
    expect(page.locator(".status.error")).to_contain_text("write key")
    enter_key(page, WRITE_KEY)
    expect(page.locator("#key-controls .key-scope")).to_have_text("write key")
    page.get_by_role("button", name="Move to the trash").click()
    expect(page.locator("#status")).to_contain_text("Moved rocket.jpg to the trash")
    listing = httpx.get(f"{locked_site.url}/images", headers={"X-API-Key": READ_KEY}).json()
    assert "rocket.jpg" not in [item["filename"] for item in listing["items"]]


def test_the_key_can_be_changed_and_forgotten(locked_page: Page) -> None:
    page = locked_page
    page.goto("/library")
    enter_key(page, WRITE_KEY)
    controls = page.locator("#key-controls")
    expect(controls.locator(".key-scope")).to_have_text("write key")
    controls.get_by_role("button", name="Change key").click()
    expect(page.locator("#api-key-prompt .prompt-text")).to_have_text("Use another API key:")
    enter_key(page, READ_KEY)
    expect(controls.locator(".key-scope")).to_have_text("read key")
    with page.expect_navigation():
        controls.get_by_role("button", name="Forget key").click()
    expect(page.locator("#api-key-prompt")).to_be_visible()
    expect(controls.locator(".key-scope")).to_have_text("no key")
    assert [c for c in page.context.cookies() if c["name"] == "imgsim_session"] == []


def test_a_key_kept_by_an_earlier_version_of_the_page_becomes_a_session(locked_page: Page) -> None:
    page = locked_page
    page.goto("/library")
    page.evaluate(f"localStorage.setItem('imgsim-api-key', {READ_KEY!r})")
    page.reload()
    page.wait_for_function(THUMBNAILS_SHOWN)
    assert page.evaluate("localStorage.getItem('imgsim-api-key')") is None
    assert [c["name"] for c in page.context.cookies()] == ["imgsim_session"]
