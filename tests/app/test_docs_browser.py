"""The docs pages render in a real browser against the real server with no network but the loopback."""

from __future__ import annotations

from collections.abc import Iterator

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
