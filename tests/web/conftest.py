"""Browser fixtures: Debian's Chromium driven by Playwright against a real uvicorn server holding real photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.app.server import running_server
from tests.web.sample import CHROMIUM, VIEWPORT, ingest, launch_chromium, made_photos, repo_photos

# Small enough that adding a handful of files from the page takes several requests.
MAX_FILES_PER_REQUEST = 4


@dataclass(frozen=True)
class Site:
    url: str
    ids: dict[str, int]  # file name -> id of the photos stored at the start


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The service over a fresh data directory holding the sample photos and six made from them."""
    tmp = tmp_path_factory.mktemp("web")
    env = {"IMGSIM_MAX_FILES_PER_REQUEST": str(MAX_FILES_PER_REQUEST)}
    photos = repo_photos() + made_photos(tmp / "photos")
    with running_server(tmp / "data", tmp / "server.log", **env) as url:
        yield Site(url, ingest(url, photos, batch=MAX_FILES_PER_REQUEST))


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh browser context on the site; a script error on the page fails the test."""
    context = browser.new_context(base_url=site.url, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"script errors on the page: {errors}"
