"""The app as Mercury serves it, in Chromium: upload a reference, see ranked results, change the metric."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.browser import offline_page
from tests.app.server import free_port, stop, wait_ready
from tests.apps.conftest import CAT_VARIANTS, NOTEBOOK, QUERY, STORED, mercury_tool
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.mercury]

RENDER_TIMEOUT_MS = 120_000


def mercury_command(port: int) -> list[str]:
    """docs/mercury.md's command, on a free port (and --allow-root where the tests run as root, as in CI)."""
    command = [str(mercury_tool("mercury")), str(NOTEBOOK.relative_to(REPO_ROOT)), "--ip=127.0.0.1"]
    command += [f"--port={port}", "--no-browser", "--MappingKernelManager.cull_idle_timeout=600"]
    command += ["--MappingKernelManager.cull_interval=60"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


@pytest.fixture(scope="module")
def mercury_url(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("mercury") / "mercury.log"
    env = {**os.environ, "IMGSIM_API_URL": api_url}
    with log.open("ab") as out:
        proc = subprocess.Popen(mercury_command(port), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log, path=f"/mercury/{NOTEBOOK.name}")
        yield f"{url}/mercury/{NOTEBOOK.name}"
    finally:
        stop(proc)  # Jupyter's server shuts its kernels down on SIGTERM


def test_a_visitor_uploads_a_reference_and_sees_ranked_results(mercury_url: str, api_url: str, tmp_path: Path) -> None:
    with offline_page() as browser:
        page = browser.page
        page.goto(mercury_url)
        # Before any upload the app asks for a reference and already lists the library.
        page.locator(".imgsim-message").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        page.get_by_text(f"Library: {len(STORED)} images").wait_for(timeout=RENDER_TIMEOUT_MS)

        page.locator("input[type=file]").first.set_input_files(QUERY)
        cards = page.locator(".imgsim-results .imgsim-card")
        cards.first.wait_for(timeout=RENDER_TIMEOUT_MS)
        assert cards.count() == len(STORED)  # k = 8 by default
        ranked = [cards.nth(i).get_attribute("data-filename") for i in range(3)]
        assert set(ranked) == CAT_VARIANTS
        assert page.get_by_text(f"most similar to {QUERY.name} (cosine)").is_visible()
        assert cards.first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        # Each card names its image (alt text) and opens the image's page on the service.
        first = cards.first
        assert first.locator("img").get_attribute("alt") == ranked[0]
        with page.context.expect_page() as opened:
            first.get_by_role("link").click()
        detail = opened.value
        detail.locator("#detail-title").get_by_text(ranked[0]).wait_for(timeout=RENDER_TIMEOUT_MS)
        assert detail.url == f"{api_url}/library/{first.get_attribute('data-id')}"
        detail.close()

        # Fewer results, then distances instead of similarities: the cells below each widget run again.
        page.locator("input.mljar-slider-input").first.fill("3")
        page.wait_for_function("document.querySelectorAll('.imgsim-results .imgsim-card').length === 3")
        page.locator(".mljar-select-control").first.click()
        page.locator(".mljar-select-option", has_text="euclidean").click()
        page.get_by_text(f"3 most similar to {QUERY.name} (euclidean)").wait_for(timeout=RENDER_TIMEOUT_MS)
        assert "distance " in cards.first.inner_text()
        assert {cards.nth(i).get_attribute("data-filename") for i in range(3)} == CAT_VARIANTS

        page.screenshot(path=str(tmp_path / "mercury.png"), full_page=True)
        assert browser.blocked == []
