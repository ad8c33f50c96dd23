"""The deployment in `deploy/` without a container engine: two real API replicas sharing PostgreSQL, one Milvus
server and one blob directory, behind nginx with the shipped `deploy/nginx.conf`. The Milvus server is
milvus-lite's gRPC server, or the real Milvus 2.3.5 standalone server of the test session (`milvus-server`, as in
deploy/compose.yaml). What one replica writes, the other serves (within `VISIBLE_S`: reads may be at a
consistency level weaker than Strong, where another replica's write shows after a moment)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from deploy.local import NGINX, nginx_command, wait_for_port
from tests import milvus_server as session_milvus
from tests.app.server import free_port, running_server
from tests.conftest import IMAGES_DIR, encode_image, fresh_postgres_database, milvus_server_uri

T = TypeVar("T")
VISIBLE_S = 10.0
SAMPLE = sorted(p for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(NGINX).is_file(), reason="nginx is not installed (apt-get install nginx)"),
]


@contextmanager
def process(command: list[str], log: Path, port: int) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log, timeout=60.0)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def milvus_server(folder: Path) -> tuple[list[str], int]:
    port = free_port()
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(folder)]
    return [*command, "--host", "127.0.0.1", "--port", str(port)], port


def nginx_server(folder: Path, replicas: list[str]) -> tuple[list[str], int]:
    """nginx running deploy/nginx.conf, its upstream pointed at the replicas and its port at a free one (as
    deploy/local.py runs it)."""
    port = free_port()
    return nginx_command(folder, replicas, port), port


def search(url: str, ref: str, k: int = 5) -> list[tuple[int, float]]:
    response = httpx.get(f"{url}/search", params={"ref": ref, "k": k}, timeout=60)
    assert response.status_code == 200, response.text
    return [(hit["id"], round(hit["score"], 5)) for hit in response.json()["results"]]


def eventually(read: Callable[[], T], expected: T) -> T:
    """`read()` until it gives `expected`, for at most VISIBLE_S seconds; returns the last value read."""
    deadline = time.monotonic() + VISIBLE_S
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


@pytest.mark.parametrize("milvus", ["milvus-lite-server", "milvus-server"])
def test_two_replicas_behind_nginx_share_every_write(tmp_path: Path, milvus: str) -> None:
    env = {
        "IMGSIM_DATABASE_URL": fresh_postgres_database(),
        "IMGSIM_VECTOR_STORE": "milvus",
        "IMGSIM_MILVUS_INDEX": "HNSW",  # as deploy/compose.yaml (milvus-lite builds FLAT whatever it is asked)
        "IMGSIM_BLOB_URL": f"file://{tmp_path / 'blobs'}",
    }
    (tmp_path / "nginx").mkdir()
    with ExitStack() as stack:
        if milvus == "milvus-server":
            env["IMGSIM_MILVUS_URI"] = milvus_server_uri()
            env["IMGSIM_MILVUS_COLLECTION"] = session_milvus.new_collection_name()
        else:
            milvus_cmd, milvus_port = milvus_server(tmp_path / "milvus")
            env["IMGSIM_MILVUS_URI"] = f"http://127.0.0.1:{milvus_port}"
            stack.enter_context(process(milvus_cmd, tmp_path / "milvus.log", milvus_port))
        first = stack.enter_context(running_server(tmp_path / "a", tmp_path / "a.log", **env))
        second = stack.enter_context(running_server(tmp_path / "b", tmp_path / "b.log", **env))
        nginx_cmd, nginx_port = nginx_server(tmp_path / "nginx", [first, second])
        stack.enter_context(process(nginx_cmd, tmp_path / "nginx" / "error.log", nginx_port))
        balanced = f"http://127.0.0.1:{nginx_port}"

        files = [("files", (p.name, p.read_bytes())) for p in SAMPLE]
        ingested = httpx.post(f"{balanced}/ingest", files=files, timeout=300)
        assert ingested.status_code == 200, ingested.text
        assert {r["status"] for r in ingested.json()["results"]} == {"added"}

        # Every replica answers every read the same, directly and through the load balancer.
        expected = search(first, "cat.png")
        assert len(expected) == 5
        assert eventually(lambda: search(second, "cat.png"), expected) == expected
        assert all(search(balanced, "cat.png") == expected for _ in range(6))
        assert httpx.get(f"{first}/stats").json()["count"] == httpx.get(f"{second}/stats").json()["count"]

        # A delete on one replica is gone from the other's searches and listings, and in its trash; restored
        # through the other, it is found by both again.
        victim = expected[0][0]
        assert httpx.delete(f"{second}/images/{victim}").status_code == 200
        assert eventually(lambda: victim in [i for i, _ in search(first, "cat.png")], False) is False
        assert httpx.get(f"{first}/images/{victim}").json()["trashed_at"] is not None
        assert [i["id"] for i in httpx.get(f"{first}/trash").json()["items"]] == [victim]
        assert httpx.post(f"{first}/trash/{victim}/restore").status_code == 200
        assert eventually(lambda: search(second, "cat.png"), expected) == expected
        assert httpx.delete(f"{first}/images/{victim}").status_code == 200
        assert httpx.delete(f"{second}/trash/{victim}").status_code == 200
        assert httpx.get(f"{first}/images/{victim}").status_code == 404

        # An image added through one replica is found by the other.
        new = encode_image("PNG", (96, 80), seed=42)
        added = httpx.post(f"{first}/ingest", files=[("files", ("new.png", new))], timeout=60).json()["results"][0]
        assert added["status"] == "added"

        def nearest() -> int:
            found = httpx.post(f"{second}/search", files={"file": ("q.png", new)}, params={"k": 1}, timeout=60)
            assert found.status_code == 200, found.text
            return int(found.json()["results"][0]["id"])

        assert eventually(nearest, added["id"]) == added["id"]
        assert httpx.get(f"{second}/images/{added['id']}/content").content == new
