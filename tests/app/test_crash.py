"""kill -9 of the real server during ingest, at several points: every acknowledged image is listed and
findable after a restart, and the vector index agrees with the store."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.app.server import start_server, stop, wait_ready
from tests.conftest import encode_image

pytestmark = pytest.mark.slow

PER_REQUEST = 4


def _images(start: int, count: int) -> list[tuple[str, bytes]]:
    return [(f"img{n}.png", encode_image("PNG", (160, 120), seed=5000 + n)) for n in range(start, start + count)]


def _ingest_until_killed(url: str, images: list[tuple[str, bytes]], acked: dict[str, int], stop_after: int) -> int:
    """Post the images a few at a time until the server dies; record each acknowledged id. Returns how many
    requests were acknowledged. `stop_after` acknowledgements in, it returns (the caller kills right away)."""
    done = 0
    for start in range(0, len(images), PER_REQUEST):
        files = [("files", item) for item in images[start : start + PER_REQUEST]]
        try:
            response = httpx.post(f"{url}/ingest", files=files, timeout=60)
        except httpx.TransportError:
            return done
        assert response.status_code == 200, response.text
        for (_name, data), result in zip(images[start : start + PER_REQUEST], response.json()["results"], strict=True):
            acked[hashlib.sha256(data).hexdigest()] = result["id"]
        done += 1
        if done == stop_after:
            return done
    return done


def test_every_acknowledged_image_survives_kill_9_at_several_points(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    acked: dict[str, int] = {}
    images = _images(0, 48)

    # 1. Killed while the model loads (before anything is served).
    proc, url = start_server(data_dir, log)
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()

    # 2. Killed right after an acknowledgement.
    proc, url = start_server(data_dir, log)
    wait_ready(proc, url, log)
    assert _ingest_until_killed(url, images[:16], acked, stop_after=2) == 2
    proc.kill()
    proc.wait()

    # 3. Killed mid-request, while ingests keep coming (the last request may or may not be acknowledged).
    proc, url = start_server(data_dir, log)
    wait_ready(proc, url, log)
    sender = threading.Thread(target=_ingest_until_killed, args=(url, images[8:], acked, 0))
    sender.start()
    deadline = time.monotonic() + 60
    while len(acked) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)  # somewhere inside the next request: decoding, the forward pass or the commit
    proc.kill()
    proc.wait()
    sender.join()
    assert len(acked) >= 16

    proc, url = start_server(data_dir, log)
    try:
        wait_ready(proc, url, log)
        with httpx.Client(base_url=url, timeout=60) as http:
            listing = http.get("/images", params={"limit": 1000}).json()
            listed = {item["sha256"]: item["id"] for item in listing["items"]}
            assert http.get("/stats").json()["count"] == listing["total"] == len(listed)
            for sha, image_id in acked.items():
                assert listed.get(sha) == image_id
            by_sha = {hashlib.sha256(data).hexdigest(): (name, data) for name, data in images}
            for sha, image_id in acked.items():
                hits = http.post("/search", files={"file": by_sha[sha]}, params={"k": 1}).json()["results"]
                assert hits[0]["id"] == image_id and hits[0]["score"] > 0.999
            # Nothing phantom: every listed image is one that was sent, with its bytes kept.
            assert set(listed) <= set(by_sha)
            again = http.post("/ingest", files=[("files", item) for item in images]).json()["results"]
            assert {r["id"] for r in again if r["status"] == "exists"} == set(listed.values())
    finally:
        stop(proc)
