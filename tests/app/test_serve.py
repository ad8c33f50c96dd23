"""Slow clients are dropped by the server as the README and the Docker image start it (`python -m app.serve`):
a connection that sends no complete request head in time is closed (a JSON 408 if it sent part of one), and
a body that trickles in below the minimum rate is cut with a JSON 408; nothing is stored. Raw sockets, each
test bounded in time."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.server import UVICORN, running_server
from tests.conftest import IMAGES_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

LIMITS = {"IMGSIM_HEADER_TIMEOUT_S": "1", "IMGSIM_MIN_BODY_RATE": "20000"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    with running_server(tmp / "data", tmp / "server.log", **LIMITS) as url:
        yield url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket, within_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (seconds from now)."""
    started, chunks = time.monotonic(), []
    sock.settimeout(within_s)
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - started


def json_body(response: bytes) -> dict[str, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return dict(json.loads(body))


def test_a_connection_that_sends_nothing_is_closed(server: str) -> None:
    with connect(server) as sock:
        response, closed_after = read_until_closed(sock, within_s=8)
    assert response == b"" and closed_after < 4  # before: still open after 20 s


def test_a_request_head_sent_a_byte_at_a_time_is_cut_with_a_408(server: str) -> None:
    head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200
    started = time.monotonic()
    with connect(server) as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response, _ = read_until_closed(sock, within_s=8)
    assert time.monotonic() - started < 6
    assert response.startswith(b"HTTP/1.1 408")
    assert "IMGSIM_HEADER_TIMEOUT_S" in json_body(response)["detail"]


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        response, closed_after = read_until_closed(sock, within_s=8)
    assert response.startswith(b"HTTP/1.1 408") and closed_after < 4


def trickle_body(url: str) -> tuple[bytes, float]:
    data = (IMAGES_DIR / "cat.png").read_bytes()
    boundary = b"trickle"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="cat.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    head = (
        b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    with connect(url) as sock:
        sock.sendall(head + body[:2000])
        sock.settimeout(0.5)
        response = b""
        for start in range(2000, len(body), 100):  # 200 bytes a second: far below the minimum
            try:
                sock.sendall(body[start : start + 100])
                response = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if response or time.monotonic() - started > 20:
                break
        rest, _ = read_until_closed(sock, within_s=8)
    return response + rest, time.monotonic() - started


def test_a_body_that_trickles_in_is_cut_with_a_408_and_nothing_is_stored(server: str) -> None:
    response, took = trickle_body(server)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert "IMGSIM_MIN_BODY_RATE" in json_body(response)["detail"]
    assert took < 10
    assert httpx.get(f"{server}/stats").json()["count"] == 0


def test_a_prompt_upload_is_served_as_before(server: str) -> None:
    files = [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in ("cat.png", "coffee.jpg")]
    response = httpx.post(f"{server}/embed", files=files, timeout=120)
    assert response.status_code == 200 and len(response.json()["results"]) == 2


def test_plain_uvicorn_still_serves_the_app_and_cuts_a_trickling_body(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", tmp_path / "server.log", command=UVICORN, **LIMITS) as url:
        assert httpx.post(f"{url}/embed", files=[("files", ("cat.png", (IMAGES_DIR / "cat.png").read_bytes()))])
        response, _ = trickle_body(url)
        assert response.startswith(b"HTTP/1.1 408")


def test_the_docker_image_starts_the_guarded_server() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8080"]' in dockerfile
