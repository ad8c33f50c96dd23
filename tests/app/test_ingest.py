from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.conftest import ingest_photos, upload
from tests.conftest import IMAGES_DIR, encode_image

LIMITS = {"max_image_pixels": 300_000, "max_files_per_request": 3, "max_upload_bytes": 600_000}


def test_ingest_reports_each_file_in_upload_order_with_its_predictions(client: TestClient) -> None:
    response = client.post("/ingest", files=upload("rocket.jpg", "coffee.jpg", "cat.png"))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["rocket.jpg", "coffee.jpg", "cat.png"]
    assert [r["status"] for r in results] == ["added", "added", "added"]
    assert len({r["id"] for r in results}) == 3
    assert results[1]["predictions"][0]["label"] == "espresso"
    assert client.get("/stats").json()["count"] == 3


def test_ingesting_the_same_bytes_again_reports_exists_with_the_same_id(client: TestClient) -> None:
    first = ingest_photos(client, "coffee.jpg")
    response = client.post("/ingest", files=[("files", ("renamed.jpg", (IMAGES_DIR / "coffee.jpg").read_bytes()))])
    (result,) = response.json()["results"]
    assert result["status"] == "exists"
    assert result["id"] == first["coffee.jpg"]
    assert result["predictions"][0]["label"] == "espresso"
    assert client.get("/stats").json()["count"] == 1
    assert client.get(f"/images/{result['id']}").json()["names"] == ["coffee.jpg", "renamed.jpg"]


def test_duplicate_files_in_one_upload_are_stored_once(client: TestClient) -> None:
    data = (IMAGES_DIR / "rocket.jpg").read_bytes()
    response = client.post("/ingest", files=[("files", ("a.jpg", data)), ("files", ("b.jpg", data))])
    a, b = response.json()["results"]
    assert (a["status"], b["status"]) == ("added", "exists")
    assert a["id"] == b["id"]
    assert client.get("/stats").json()["count"] == 1


def test_a_file_name_with_directories_is_kept_as_its_last_part_only(client: TestClient) -> None:
    response = client.post("/ingest", files=[("files", ("../../etc/passwd.jpg", encode_image("JPEG")))])
    assert response.json()["results"][0]["filename"] == "passwd.jpg"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An API with small limits that already holds one photo."""
    from app.main import create_app
    from index.config import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("limited") / "data", **LIMITS)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        ingest_photos(client, "coins.jpg")
        yield client


def _png(size: tuple[int, int]) -> bytes:
    return encode_image("PNG", size=size, seed=7)


def _ico() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "ICO")
    return buf.getvalue()


def _corrupt_png() -> bytes:
    data = bytearray(encode_image("PNG", size=(200, 150), seed=9))
    data[60:200] = bytes(140)  # a valid header, garbage where the compressed pixels were
    return bytes(data)


BAD_UPLOADS: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "empty": (lambda: b"", 422, "empty"),
    "text": (lambda: b"hello, I am not a picture\n" * 10, 422, "not a recognised image"),
    "truncated_jpeg": (lambda: (IMAGES_DIR / "coffee.jpg").read_bytes()[:20_000], 422, ""),
    "corrupt_png": (_corrupt_png, 422, ""),
    "unsupported_ico": (_ico, 415, "unsupported image format"),
    "too_many_pixels": (lambda: _png((800, 600)), 413, "pixels"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
@pytest.mark.parametrize("route", ["/ingest", "/embed", "/predict", "/search"])
def test_a_bad_upload_is_a_4xx_with_a_detail_and_stores_nothing(limited: TestClient, case: str, route: str) -> None:
    make, status, words = BAD_UPLOADS[case]
    good = ("files", ("good.jpg", (IMAGES_DIR / "rocket.jpg").read_bytes()))
    # Next to a good file where the route takes several: the good one must not be stored either.
    files = [("file", ("bad.bin", make()))] if route == "/search" else [good, ("files", ("bad.bin", make()))]
    before = limited.get("/images").json()
    response = limited.post(route, files=files)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert limited.get("/images").json() == before


def test_more_files_than_the_limit_are_refused(limited: TestClient) -> None:
    files = [("files", (f"{n}.png", encode_image("PNG", seed=20 + n))) for n in range(4)]
    response = limited.post("/ingest", files=files)
    assert response.status_code == 422
    assert "limit is 3" in response.json()["detail"]
    assert limited.get("/stats").json()["count"] == 1


def test_a_request_without_files_is_refused(limited: TestClient) -> None:
    assert limited.post("/ingest").status_code == 422
    assert limited.post("/ingest", data={"other": "x"}).status_code == 422


def test_a_body_over_the_limit_is_413_from_its_declared_length(limited: TestClient) -> None:
    big = [("files", (f"{n}.png", (IMAGES_DIR / name).read_bytes())) for n, name in enumerate(["cat.png"] * 3)]
    response = limited.post("/ingest", files=big)
    assert response.status_code == 413
    assert "600000 bytes" in response.json()["detail"]
    assert limited.get("/stats").json()["count"] == 1


BOUNDARY = "imgsimtestboundary"
PART_HEADER = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
    "Content-Type: image/png\r\n\r\n"
).encode()
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def test_a_chunked_body_without_a_length_is_413_once_it_passes_the_limit(limited: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield PART_HEADER
        for _ in range(40):  # 40 x 64 KiB = 2.5 MiB
            yield b"\x00" * 65536
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = limited.post("/ingest", content=body(), headers={"content-type": MULTIPART})
    assert response.status_code == 413
    assert limited.get("/stats").json()["count"] == 1


def test_the_body_limit_stops_reading_as_soon_as_the_limit_is_passed(limited: TestClient) -> None:
    """At the ASGI level: the app pulls body chunks one by one and must stop pulling at the limit."""
    chunk, chunks_available = 65536, 1000  # 64 MiB offered
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = PART_HEADER if pulled == 1 else b"\x00" * chunk
        return {"type": "http.request", "body": body, "more_body": pulled < chunks_available}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ingest",
        "raw_path": b"/ingest",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", MULTIPART.encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(limited.app, scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    assert pulled <= LIMITS["max_upload_bytes"] // chunk + 2
    assert limited.get("/stats").json()["count"] == 1


def test_an_upload_within_the_limits_still_works_after_refusals(limited: TestClient) -> None:
    response = limited.post("/ingest", files=upload("cat_crop.jpg"))
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "added"
    limited.delete(f"/images/{response.json()['results'][0]['id']}")
