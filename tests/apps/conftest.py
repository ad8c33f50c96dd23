"""Fixtures for the Mercury app: its own virtual environment, and a real API server holding sample photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.server import running_server
from tests.conftest import IMAGES_DIR, REPO_ROOT

APPS_DIR = REPO_ROOT / "apps"
NOTEBOOK = APPS_DIR / "imgsim.ipynb"
# The app's requirements (apps/requirements.txt) live in their own environment, as docs/mercury.md installs them.
MERCURY_VENV = Path(os.environ.get("IMGSIM_MERCURY_VENV", REPO_ROOT / ".venv-mercury"))
STORED = ["cat.png", "cat_crop.jpg", "cat_mirror.png", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.jpg"]
CAT_VARIANTS = {"cat.png", "cat_crop.jpg", "cat_mirror.png"}
QUERY = IMAGES_DIR / "cat_recompressed.jpg"
INSTALL = "python3 -m venv .venv-mercury && .venv-mercury/bin/pip install -r apps/requirements.txt"


def mercury_tool(name: str) -> Path:
    """A console script of the app's environment; missing, the test is skipped (in CI, where .ci/run installs
    it, it fails)."""
    path = MERCURY_VENV / "bin" / name
    if not path.exists():
        message = f"{path} is missing: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="package")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real imgsim server holding STORED."""
    tmp = tmp_path_factory.mktemp("apps-server")
    with running_server(tmp / "data", tmp / "server.log") as url:
        files = [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in STORED]
        assert httpx.post(f"{url}/ingest", files=files, timeout=120).status_code == 200
        yield url
