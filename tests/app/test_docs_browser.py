"""The docs pages render in a real browser against the real server with no network but the loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.browser import offline_page
from tests.app.server import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("docs-server")
    with running_server(tmp / "data", tmp / "server.log") as url:
        yield url


def test_swagger_ui_renders_every_operation_offline(server_url: str) -> None:
    import httpx

    paths = httpx.get(f"{server_url}/openapi.json").json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    with offline_page() as browser:
        page = browser.page
        page.goto(f"{server_url}/docs")
        page.locator(".opblock").first.wait_for(timeout=30_000)
        assert page.locator(".opblock").count() == operations
        assert page.locator(".opblock-summary-path", has_text="/upload-images/").count() == 1
        page.locator(".opblock-post .opblock-summary", has_text="/ingest").first.click()
        page.get_by_text("Store each uploaded image").first.wait_for()
        assert page.locator(".info .title").inner_text().startswith("imgsim")
        assert browser.blocked == []


def test_redoc_renders_the_operations_offline(server_url: str) -> None:
    with offline_page() as browser:
        page = browser.page
        page.goto(f"{server_url}/redoc")
        page.get_by_text("Store each uploaded image").first.wait_for(timeout=30_000)
        assert page.get_by_text("/upload-images/").count() >= 1
        assert browser.blocked == []


def test_the_test_browser_refuses_every_address_but_the_loopback() -> None:
    # The guard the tests above rely on: a page that tries to leave the loopback gets nothing, and it is recorded.
    with offline_page() as browser:
        browser.page.set_content('<img src="http://192.0.2.1/x.png">', wait_until="load")
        assert browser.blocked == ["http://192.0.2.1/x.png"]


def test_authorize_in_swagger_ui_sends_the_key_with_try_it_out(tmp_path: Path) -> None:
    keys = {"IMGSIM_API_KEYS": "docs-key:read"}
    with running_server(tmp_path / "data", tmp_path / "server.log", **keys) as url, offline_page() as browser:
        page = browser.page
        sent: list[str | None] = []
        page.on("request", lambda r: sent.append(r.headers.get("x-api-key")) if r.url.endswith("/stats") else None)
        page.goto(f"{url}/docs")
        page.locator("button.authorize").first.click(timeout=30_000)
        dialog = page.locator(".modal-ux")
        dialog.locator("input").first.fill("docs-key")
        dialog.locator("button.modal-btn.authorize").first.click()
        dialog.locator("button.btn-done").first.click()
        page.locator(".opblock-get .opblock-summary", has_text="/stats").first.click()
        page.get_by_role("button", name="Try it out").click()
        page.get_by_role("button", name="Execute").click()
        status = page.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip().startswith("200")
        assert sent == ["docs-key"]
        assert browser.blocked == []
