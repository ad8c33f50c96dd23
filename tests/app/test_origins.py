"""A page on another site cannot drive the API through the user's browser: DNS rebinding (a foreign Host) is
refused with 400, and a state-changing request from another origin with 403; the server's own page, clients
that are not browsers and the configured CORS origins are not affected."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.origins import split_host
from tests.app.conftest import ClientFactory, ingest_photos, upload
from tests.app.server import running_server
from tests.conftest import IMAGES_DIR

REBOUND = {"Host": "rebind.attacker.example"}


def test_a_foreign_host_name_is_refused_for_reads_and_writes(client: TestClient) -> None:
    ids = ingest_photos(client, "cat.png")
    for method, path in (("GET", "/images"), ("GET", f"/images/{ids['cat.png']}/content"), ("GET", "/")):
        response = client.request(method, path, headers=REBOUND)
        assert response.status_code == 400, path
        assert "rebind.attacker.example" in response.json()["detail"]
        assert "IMGSIM_ALLOWED_HOSTS" in response.json()["detail"]
    assert client.delete(f"/images/{ids['cat.png']}", headers=REBOUND).status_code == 400
    assert client.post("/ingest", files=upload("coffee.jpg"), headers=REBOUND).status_code == 400
    assert client.get("/stats").json()["count"] == 1


@pytest.mark.parametrize(
    "host", ["localhost:8080", "LOCALHOST", "app.localhost:8080", "127.0.0.1:8080", "[::1]:8080", "192.168.1.20"]
)
def test_localhost_names_and_ip_addresses_are_served(client: TestClient, host: str) -> None:
    assert client.get("/stats", headers={"Host": host}).status_code == 200


def test_configured_host_names_are_served(make_client: ClientFactory) -> None:
    client = make_client(allowed_hosts="imgsim.example.org,*.photos.example")
    for host in ("imgsim.example.org", "imgsim.example.org:443", "a.photos.example"):
        assert client.get("/stats", headers={"Host": host}).status_code == 200, host
    assert client.get("/stats", headers={"Host": "photos.example.evil"}).status_code == 400
    assert make_client(allowed_hosts="*").get("/stats", headers=REBOUND).status_code == 200


def test_a_write_from_another_sites_page_is_refused_and_stores_nothing(client: TestClient) -> None:
    ids = ingest_photos(client, "cat.png")
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:3000", "Host": "localhost:8080"},  # another port is another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        stored = client.post("/ingest", files=upload("coffee.jpg"), headers=headers)
        assert stored.status_code == 403, headers
        assert "IMGSIM_CORS_ORIGINS" in stored.json()["detail"]
        assert client.delete(f"/images/{ids['cat.png']}", headers=headers).status_code == 403
        assert client.post("/embed", files=upload("coffee.jpg"), headers=headers).status_code == 403
    assert client.get("/stats").json()["count"] == 1
    # Reading is not refused: without CORS headers the other page cannot see the answer.
    assert client.get("/images", headers={"Origin": "http://evil.example"}).status_code == 200


def test_the_servers_own_origin_and_configured_origins_may_write(make_client: ClientFactory) -> None:
    client = make_client(cors_origins="http://localhost:3000")
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/ingest", files=upload("cat.png"), headers=own).status_code == 200
    proxied = {"Origin": "https://imgsim.example.org", "Host": "imgsim.example.org"}  # TLS ends at a proxy
    assert make_client(allowed_hosts="imgsim.example.org").post("/embed", files=upload("cat.png"), headers=proxied)
    cors = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    response = client.post("/ingest", files=upload("coffee.jpg"), headers=cors)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert client.post("/ingest", files=upload("rocket.jpg"), headers={"Sec-Fetch-Site": "none"}).status_code == 200


def test_split_host_reads_names_ports_and_ipv6() -> None:
    assert split_host("Example.org:8080") == ("example.org", 8080)
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("::1") == ("::1", None)
    assert split_host("host.") == ("host", None)


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _multipart(name: str, data: bytes) -> tuple[bytes, bytes]:
    boundary = b"imgsimboundary"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return b"multipart/form-data; boundary=" + boundary, body


@pytest.mark.slow
def test_a_real_server_refuses_rebinding_and_cross_site_posts_sent_as_raw_http(tmp_path: Path) -> None:
    content_type, body = _multipart("cat.png", (IMAGES_DIR / "cat.png").read_bytes())
    with running_server(tmp_path / "data", tmp_path / "server.log") as url:
        port = url.rsplit(":", 1)[1]
        rebound = _raw(
            url,
            b"GET /images HTTP/1.1\r\nHost: rebind.attacker.example:" + port.encode() + b"\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert rebound.startswith(b"HTTP/1.1 400") and b"rebind.attacker.example" in rebound
        # Answered from the head alone, before the body is read (the body is not even sent).
        cross_site = _raw(
            url,
            b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nOrigin: http://evil.example\r\n"
            b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert cross_site.startswith(b"HTTP/1.1 403") and b"IMGSIM_CORS_ORIGINS" in cross_site
        listing = _raw(
            url, b"GET /images HTTP/1.1\r\nHost: localhost:" + port.encode() + b"\r\nConnection: close\r\n\r\n"
        )
        assert listing.startswith(b"HTTP/1.1 200") and b'"total":0' in listing
        same_origin = _raw(
            url,
            b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nOrigin: " + url.encode() + b"\r\n"
            b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + body,
        )
        assert same_origin.startswith(b"HTTP/1.1 200"), same_origin[:300]
