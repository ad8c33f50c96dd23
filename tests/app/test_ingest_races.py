"""An ingest racing a purge of content it found stored stays all-or-nothing, on a real uvicorn process over
each configuration: the purge that comes first fails the ingest whole (409, retry), the one that comes later
is refused (409, retry)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.app.conftest import upload
from tests.app.server import running_server
from tests.conftest import backend_overrides

PAUSE_S = 2.0  # each of the ingest's two waits (IMGSIM_INGEST_PAUSE_S)


def _ingest_in_background(url: str, names: tuple[str, ...]) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{url}/ingest", files=upload(*names), timeout=60)), daemon=True
    )
    thread.start()
    return thread, answers


def _names(url: str) -> set[str]:
    items = httpx.get(f"{url}/images", params={"limit": 100}).json()["items"]
    return {i["filename"] for i in items}


def test_an_ingest_and_a_purge_of_its_stored_image_never_leave_half_an_ingest(tmp_path: Path, backend: str) -> None:
    env = {f"IMGSIM_{k.upper()}": str(v) for k, v in backend_overrides(backend, tmp_path).items()}
    with running_server(tmp_path / "data", tmp_path / "server.log", IMGSIM_INGEST_PAUSE_S=str(PAUSE_S), **env) as url:
        stored = httpx.post(f"{url}/ingest", files=upload("cat.png"), timeout=60).json()["results"][0]["id"]
        assert httpx.delete(f"{url}/images/{stored}").status_code == 200  # in the trash: it can be purged

        # The purge comes first, while the ingest has found the cat stored but holds nothing yet.
        thread, answers = _ingest_in_background(url, ("cat.png", "rocket.jpg"))
        time.sleep(PAUSE_S / 2)
        assert httpx.delete(f"{url}/trash/{stored}").status_code == 200
        thread.join(30)
        assert answers[0].status_code == 409, answers[0].text
        assert "retry" in answers[0].json()["detail"]
        assert _names(url) == set() and httpx.get(f"{url}/trash").json()["total"] == 0  # the rocket was not stored
        retried = httpx.post(f"{url}/ingest", files=upload("cat.png", "rocket.jpg"), timeout=60)
        assert retried.status_code == 200 and [r["status"] for r in retried.json()["results"]] == ["added", "added"]

        # The purge comes later, while the ingest holds the cat it found (in the trash again): refused.
        cat = retried.json()["results"][0]["id"]
        assert httpx.delete(f"{url}/images/{cat}").status_code == 200
        thread, answers = _ingest_in_background(url, ("cat.png", "coffee.jpg"))
        time.sleep(PAUSE_S * 1.5)
        refused = httpx.delete(f"{url}/trash/{cat}")
        assert refused.status_code == 409 and "retry" in refused.json()["detail"], refused.text
        thread.join(30)
        assert answers[0].status_code == 200, answers[0].text
        assert [r["status"] for r in answers[0].json()["results"]] == ["restored", "added"]
        assert _names(url) == {"cat.png", "rocket.jpg", "coffee.jpg"}
        assert httpx.get(f"{url}/images/{cat}").json()["trashed_at"] is None
