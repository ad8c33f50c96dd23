"""A full disk: ingest answers 507 JSON and stores nothing, searches go on, shutdown and restart work, and once
there is room again everything acknowledged is there. Runs on a small tmpfs the test mounts (root only)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from index.config import Settings
from tests.app.conftest import ingest_photos, upload
from tests.conftest import IMAGES_DIR, encode_image

FS_SIZE = "24m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A private 24 MB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte with one file; returns it (delete it to make room)."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(chunk[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def temporary_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*.tmp")]


def test_a_full_disk_answers_507_keeps_serving_searches_and_loses_nothing(small_disk: Path) -> None:
    settings = Settings(data_dir=small_disk / "data")
    photos = ["cat.png", "cat_crop.jpg", "coffee.jpg", "rocket.jpg"]
    with TestClient(create_app(settings)) as client:
        ids = ingest_photos(client, *photos)
        before = client.get("/search", params={"ref": "cat.png", "k": 3}).json()
        filler = fill(small_disk)
        big = [("files", (f"new{n}.png", encode_image("PNG", (1024, 1024), seed=n))) for n in range(4)]
        for _ in range(3):  # again and again: no temporary file piles up
            response = client.post("/ingest", files=big)
            assert response.status_code == 507
            assert "disk is full" in response.json()["detail"] or "full" in response.json()["detail"]
        assert client.get("/search", params={"ref": "cat.png", "k": 3}).json() == before
        assert client.post("/search", files={"file": upload("cat_crop.jpg")[0][1]}).status_code == 200
        assert client.get("/images").json()["total"] == len(photos)
        assert client.get("/health").status_code == 200  # the connection and the app are still fine
        assert temporary_files(settings.data_dir) == []
    # Shutdown on the full disk did not fail (the `with` exited); a restart on it serves everything.
    with TestClient(create_app(settings)) as client:
        assert client.get("/search", params={"ref": "cat.png", "k": 3}).json() == before
        assert client.post("/ingest", files=big[:1]).status_code == 507
        filler.unlink()  # room again
        added = client.post("/ingest", files=big[:1])
        assert added.status_code == 200, added.text
        listed = {item["id"] for item in client.get("/images").json()["items"]}
        assert listed == {*ids.values(), added.json()["results"][0]["id"]}
        hits = client.post("/search", files={"file": ("q.jpg", (IMAGES_DIR / "coffee.jpg").read_bytes())}).json()
        assert hits["results"][0]["id"] == ids["coffee.jpg"]
    assert temporary_files(settings.data_dir) == []
