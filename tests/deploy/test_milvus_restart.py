"""The Milvus server stopping under a running API: searches and ingests answer 503 with a JSON reason while it is
down, searches work again once it is back, and every image acknowledged before the stop is still found.

A real API process on PostgreSQL and a Milvus 2.3.5 standalone server of the test's own (deploy/local_milvus.py,
needs root and the `milvus` package), stopped gracefully or killed as in a crash."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import httpx
import pytest

from deploy.local_milvus import LocalMilvus
from tests.app.server import running_server
from tests.conftest import IMAGES_DIR, encode_image, fresh_postgres_database

SAMPLE = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})
# While the server is down, each request should fail fast rather than wait on pymilvus's retries.
DOWN_ANSWER_S = 30.0
RECOVERY_S = 120.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("milvus") is None, reason="needs the milvus package"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a local Milvus server needs root (its network namespace)"),
]


def searched_ids(url: str, ref: str, k: int) -> set[int]:
    response = httpx.get(f"{url}/search", params={"ref": ref, "k": k}, timeout=120)
    assert response.status_code == 200, response.text
    return {hit["id"] for hit in response.json()["results"]}


def assert_unavailable(response: httpx.Response, started: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Milvus" in response.json()["detail"]
    assert time.monotonic() - started < DOWN_ANSWER_S


def milvus_down_then_up(tmp_path: Path, kill: bool) -> None:
    with LocalMilvus(tmp_path / "milvus") as milvus:
        env = {
            "IMGSIM_DATABASE_URL": fresh_postgres_database(),
            "IMGSIM_VECTOR_STORE": "milvus",
            "IMGSIM_MILVUS_URI": milvus.uri,
            "IMGSIM_MILVUS_INDEX": "HNSW",  # as deploy/compose.yaml
        }
        with running_server(tmp_path / "data", tmp_path / "server.log", **env) as url:
            files = [("files", (p.name, p.read_bytes())) for p in SAMPLE]
            ingested = httpx.post(f"{url}/ingest", files=files, timeout=300)
            assert ingested.status_code == 200, ingested.text
            acknowledged = {r["id"] for r in ingested.json()["results"]}
            assert len(acknowledged) == len(SAMPLE)
            # A search by reference leaves the reference itself out: every other image is found.
            (cat,) = [r["id"] for r in ingested.json()["results"] if r["filename"] == "cat.png"]
            k = len(SAMPLE) + 5
            assert searched_ids(url, "cat.png", k) == acknowledged - {cat}

            milvus.stop(kill=kill)
            started = time.monotonic()
            assert_unavailable(httpx.get(f"{url}/search", params={"ref": "cat.png"}, timeout=120), started)
            query = encode_image("PNG", (96, 80), seed=7)
            started = time.monotonic()
            by_upload = httpx.post(f"{url}/search", files={"file": ("q.png", query)}, timeout=120)
            assert_unavailable(by_upload, started)
            started = time.monotonic()
            refused = httpx.post(f"{url}/ingest", files=[("files", ("late.png", query))], timeout=120)
            assert_unavailable(refused, started)
            # The API itself stays up and says the process is alive.
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200

            milvus.start()
            deadline = time.monotonic() + RECOVERY_S
            while True:
                response = httpx.get(f"{url}/search", params={"ref": "cat.png", "k": k}, timeout=120)
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                assert response.status_code == 503, response.text
                time.sleep(0.5)
            assert response.status_code == 200, f"no recovery within {RECOVERY_S} s: {response.text}"
            assert {hit["id"] for hit in response.json()["results"]} >= acknowledged - {cat}

            # The ingest refused while it was down, sent again, is searchable (its row had committed before the
            # server refused its vector).
            again = httpx.post(f"{url}/ingest", files=[("files", ("late.png", query))], timeout=120)
            assert again.status_code == 200, again.text
            late_id = again.json()["results"][0]["id"]
            found = httpx.post(f"{url}/search", files={"file": ("q.png", query)}, params={"k": 1}, timeout=120)
            assert found.status_code == 200, found.text
            assert found.json()["results"][0]["id"] == late_id, (again.json(), found.json())

            # New writes work again, and are found.
            fresh = encode_image("PNG", (80, 96), seed=11)
            added = httpx.post(f"{url}/ingest", files=[("files", ("fresh.png", fresh))], timeout=120)
            assert added.status_code == 200, added.text
            new_id = added.json()["results"][0]["id"]
            found = httpx.post(f"{url}/search", files={"file": ("q.png", fresh)}, params={"k": 1}, timeout=120)
            assert found.status_code == 200, found.text
            assert found.json()["results"][0]["id"] == new_id


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_while_milvus_is_down_requests_get_503_json_and_after_its_restart_nothing_acknowledged_is_lost(
    tmp_path: Path, kill: bool
) -> None:
    milvus_down_then_up(tmp_path, kill)
