"""Photos as phones and cameras write them: HEIC and AVIF are ingested, shown and searched like JPEGs (upright
per their orientation), their EXIF (date taken, camera, lens, GPS) is kept and listings filter and sort by it;
a HEIC too large or broken is refused like any other image. Both configurations."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from index.config import Settings
from tests.app.conftest import ClientFactory, ingest_photos
from tests.camera_raw import make_dng
from tests.conftest import IMAGES_DIR, backend_overrides, encode_photo

# name -> (sample photo, format, EXIF): coffee.heic is coffee.jpg as an iPhone stores it (sideways pixels,
# orientation 6), rocket.avif is rocket.jpg sideways the other way (8), camera_exif.jpg a JPEG with EXIF.
PHOTOS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "coffee.heic": (
        "coffee.jpg",
        "HEIF",
        {
            "taken": "2024:05:01 12:30:00",
            "make": "Apple",
            "model": "iPhone 15 Pro",
            "lens": "iPhone 15 Pro back triple camera 6.86mm f/1.78",
            "gps": (48.8583, 2.2945),
            "orientation": 6,
        },
    ),
    "rocket.avif": (
        "rocket.jpg",
        "AVIF",
        {
            "taken": "2023:08:15 09:05:10",
            "make": "Canon",
            "model": "Canon EOS R5",
            "gps": (28.5729, -80.649),
            "orientation": 8,
        },
    ),
    "camera_exif.jpg": ("camera.jpg", "JPEG", {"taken": "2022:01:10 18:00:00", "make": "SONY", "model": "ILCE-7M4"}),
}


def photo_bytes(name: str) -> bytes:
    source, fmt, exif = PHOTOS[name]
    return encode_photo(IMAGES_DIR / source, fmt, **exif)


@pytest.fixture(scope="module")
def phone_client(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[TestClient]:
    """An API holding the three PHOTOS and two JPEG/PNG originals without EXIF; tests must not change it."""
    data_dir = tmp_path_factory.mktemp("phone") / "data"
    with TestClient(create_app(Settings(data_dir=data_dir, **backend_overrides(backend, data_dir)))) as client:
        ingest_photos(client, "coffee.jpg", "cat.png")
        response = client.post("/ingest", files=[("files", (name, photo_bytes(name))) for name in PHOTOS])
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {"added"}
        yield client


def listing(client: TestClient, **params: str) -> list[str]:
    response = client.get("/images", params={"limit": "100", **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return [item["filename"] for item in body["items"]]


def image(client: TestClient, name: str) -> dict[str, Any]:
    items = client.get("/images", params={"name": name}).json()["items"]
    return next(i for i in items if i["filename"] == name)


def test_heic_and_avif_are_stored_upright_with_their_format_and_bytes(phone_client: TestClient) -> None:
    for name, fmt, content_type in (("coffee.heic", "HEIF", "image/heic"), ("rocket.avif", "AVIF", "image/avif")):
        stored = image(phone_client, name)
        # Both pictures are 600 x 400 upright; their files hold them 400 x 600, turned by their orientation.
        assert (stored["format"], stored["width"], stored["height"]) == (fmt, 600, 400)
        content = phone_client.get(f"/images/{stored['id']}/content")
        assert content.headers["content-type"] == content_type
        assert content.content == photo_bytes(name)


def test_the_thumbnail_of_a_heic_is_the_upright_picture(phone_client: TestClient) -> None:
    def thumbnail(name: str) -> np.ndarray[Any, Any]:
        response = phone_client.get(f"/images/{image(phone_client, name)['id']}/thumbnail")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        return np.asarray(Image.open(io.BytesIO(response.content)).convert("L"), dtype=np.float64)

    heic, jpeg = thumbnail("coffee.heic"), thumbnail("coffee.jpg")
    assert heic.shape == jpeg.shape == (171, 256)
    assert np.abs(heic - jpeg).mean() < 6  # the same picture, up to the two encoders' losses


def test_searching_from_a_heic_finds_its_jpeg_original_first(phone_client: TestClient) -> None:
    by_ref = phone_client.get("/search", params={"ref": "coffee.heic"}).json()["results"]
    assert by_ref[0]["filename"] == "coffee.jpg"
    uploaded = phone_client.post("/search", files={"file": ("query.avif", photo_bytes("rocket.avif"))})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["results"][0]["filename"] == "rocket.avif"
    back = phone_client.get("/search", params={"ref": "coffee.jpg"}).json()["results"]
    assert back[0]["filename"] == "coffee.heic"


def test_the_exif_date_camera_lens_and_position_are_in_the_image(phone_client: TestClient) -> None:
    heic = phone_client.get(f"/images/{image(phone_client, 'coffee.heic')['id']}").json()
    assert heic["taken_at"] == "2024-05-01T12:30:00"
    assert (heic["camera_make"], heic["camera_model"]) == ("Apple", "iPhone 15 Pro")
    assert heic["lens"] == "iPhone 15 Pro back triple camera 6.86mm f/1.78"
    assert heic["latitude"] == pytest.approx(48.8583, abs=1e-4)
    assert heic["longitude"] == pytest.approx(2.2945, abs=1e-4)
    avif = image(phone_client, "rocket.avif")
    assert (avif["taken_at"], avif["camera_model"], avif["lens"]) == ("2023-08-15T09:05:10", "Canon EOS R5", None)
    assert avif["longitude"] == pytest.approx(-80.649, abs=1e-4)  # west
    plain = image(phone_client, "cat.png")
    assert {
        k: plain[k] for k in ("taken_at", "camera_make", "camera_model", "lens", "latitude", "longitude")
    } == dict.fromkeys(("taken_at", "camera_make", "camera_model", "lens", "latitude", "longitude"))


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"taken_after": "2023-01-01"}, ["rocket.avif", "coffee.heic"]),
        ({"taken_before": "2024-01-01"}, ["rocket.avif", "camera_exif.jpg"]),
        ({"taken_after": "2023-08-15T09:05:10", "taken_before": "2024-05-01"}, ["rocket.avif"]),
        ({"taken_after": "2024-05-02"}, []),
        ({"camera": "iphone"}, ["coffee.heic"]),
        ({"camera": "canon eos"}, ["rocket.avif"]),
        ({"camera": "Sony ilce"}, ["camera_exif.jpg"]),
        ({"camera": "nikon"}, []),
        ({"camera": "e", "taken_before": "2023-12-31"}, ["rocket.avif", "camera_exif.jpg"]),
    ],
)
def test_listings_filter_by_date_taken_and_camera(
    phone_client: TestClient, params: dict[str, str], names: list[str]
) -> None:
    assert sorted(listing(phone_client, **params)) == sorted(names)


def test_listings_sort_by_date_taken_name_size_or_order_added(phone_client: TestClient) -> None:
    added = ["coffee.jpg", "cat.png", "coffee.heic", "rocket.avif", "camera_exif.jpg"]
    assert listing(phone_client) == listing(phone_client, sort="added") == added
    assert listing(phone_client, sort="-added") == added[::-1]
    # Photos without a date taken come last, either way, in the order they were added.
    assert listing(phone_client, sort="taken") == [
        "camera_exif.jpg",
        "rocket.avif",
        "coffee.heic",
        "coffee.jpg",
        "cat.png",
    ]
    assert listing(phone_client, sort="-taken") == [
        "coffee.heic",
        "rocket.avif",
        "camera_exif.jpg",
        "cat.png",
        "coffee.jpg",
    ]
    assert listing(phone_client, sort="name") == sorted(added)
    items = phone_client.get("/images", params={"sort": "-size"}).json()["items"]
    sizes = [i["byte_size"] for i in items]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == len(added)
    page = phone_client.get("/images", params={"sort": "taken", "offset": 1, "limit": 2}).json()
    assert (page["total"], [i["filename"] for i in page["items"]]) == (5, ["rocket.avif", "coffee.heic"])


@pytest.mark.parametrize(
    "params", [{"sort": "date"}, {"sort": "--taken"}, {"taken_after": "yesterday"}, {"taken_before": "2024-13-01"}]
)
def test_a_bad_sort_or_date_is_422(phone_client: TestClient, params: dict[str, str]) -> None:
    response = phone_client.get("/images", params=params)
    assert response.status_code == 422, response.text


def _claiming_size(heic: bytes, width: int, height: int) -> bytes:
    """The HEIC with its header ('ispe' box) claiming another size; its coded picture stays as it was."""
    at = heic.find(b"ispe")
    return heic[: at + 8] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + heic[at + 16 :]


def test_a_heic_over_the_pixel_limit_is_refused_from_its_header_413(make_client: ClientFactory) -> None:
    client = make_client(max_image_pixels=200_000)
    ids = ingest_photos(client, "cat.png")
    heic = encode_photo(IMAGES_DIR / "coffee.jpg", "HEIF")
    claims = _claiming_size(heic, 5000, 4000)  # decoding it would fail: the picture coded inside is 600 x 400
    for data, says in ((heic, "600x400 = 240000 pixels"), (claims, "5000x4000 = 20000000 pixels")):
        response = client.post("/ingest", files=[("files", ("big.heic", data))])
        assert response.status_code == 413, response.text
        assert says in response.json()["detail"]
    unlimited = make_client()
    assert unlimited.post("/ingest", files=[("files", ("big.heic", claims))]).status_code == 422
    assert client.get("/stats").json()["count"] == len(ids)


def test_a_corrupt_heic_is_a_422_and_stores_nothing(make_client: ClientFactory) -> None:
    client = make_client()
    ids = ingest_photos(client, "cat.png")
    heic = encode_photo(IMAGES_DIR / "coffee.jpg", "HEIF")
    for broken in (heic[: len(heic) // 2], heic[:200]):
        response = client.post("/ingest", files=[("files", ("broken.heic", broken))])
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("broken.heic: ")
    assert client.get("/stats").json()["count"] == len(ids)


# Camera RAW: astronaut.dng carries a 1200 px JPEG preview (what is decoded), coins.dng only its sensor data
# (demosaiced at half size); both lie sideways on the sensor, as a portrait-held camera records them.
RAW_PHOTOS = {
    "astronaut.dng": ("astronaut.jpg", {"preview_side": 1200, "orientation": 6, "make": "NIKON CORPORATION"}),
    "coins.dng": ("coins.jpg", {"orientation": 8, "model": "Canon EOS R6", "taken": "2020:02:29 16:20:00"}),
}


def raw_bytes(name: str) -> bytes:
    source, options = RAW_PHOTOS[name]
    return make_dng(Image.open(IMAGES_DIR / source), **options)


@pytest.fixture(scope="module")
def raw_client(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[TestClient]:
    """An API holding the JPEG originals of RAW_PHOTOS, another photo, and the two DNGs."""
    data_dir = tmp_path_factory.mktemp("raw") / "data"
    with TestClient(create_app(Settings(data_dir=data_dir, **backend_overrides(backend, data_dir)))) as client:
        ingest_photos(client, "astronaut.jpg", "coins.jpg", "coffee.jpg")
        response = client.post("/ingest", files=[("files", (name, raw_bytes(name))) for name in RAW_PHOTOS])
        assert response.status_code == 200, response.text
        yield client


def test_a_camera_raw_is_stored_upright_and_searching_from_it_finds_its_jpeg_first(raw_client: TestClient) -> None:
    for name, original in (("astronaut.dng", "astronaut.jpg"), ("coins.dng", "coins.jpg")):
        raw, jpeg = image(raw_client, name), image(raw_client, original)
        assert raw["format"] == "DNG"
        # Upright, and the size decoded: the preview (1200 px long), or half the sensor.
        assert raw["width"] / raw["height"] == pytest.approx(jpeg["width"] / jpeg["height"], rel=0.01)
        assert max(raw["width"], raw["height"]) == (
            1200 if name == "astronaut.dng" else max(jpeg["width"], jpeg["height"]) // 2
        )
        content = raw_client.get(f"/images/{raw['id']}/content")
        assert (content.headers["content-type"], content.content) == ("image/x-adobe-dng", raw_bytes(name))
        assert raw_client.get("/search", params={"ref": name}).json()["results"][0]["filename"] == original
        raw_thumb, jpeg_thumb = (
            Image.open(io.BytesIO(raw_client.get(f"/images/{i}/thumbnail").content)).convert("L")
            for i in (raw["id"], jpeg["id"])
        )
        # A half-size demosaic is smaller than the 256 px thumbnail: compared at the JPEG's thumbnail size.
        thumbnails = [np.asarray(t.resize(jpeg_thumb.size), np.float64) for t in (raw_thumb, jpeg_thumb)]
        turned = np.rot90(thumbnails[1], 2)  # the same picture upside down: what a wrong orientation would give
        assert np.abs(thumbnails[0] - thumbnails[1]).mean() < np.abs(thumbnails[0] - turned).mean()


def test_a_camera_raw_keeps_its_exif_and_is_listed_by_it(raw_client: TestClient) -> None:
    coins = image(raw_client, "coins.dng")
    assert (coins["camera_make"], coins["camera_model"], coins["taken_at"]) == (
        "Canon",
        "Canon EOS R6",
        "2020-02-29T16:20:00",
    )
    assert listing(raw_client, camera="nikon") == ["astronaut.dng"]
    assert listing(raw_client, sort="taken")[:2] == ["coins.dng", "astronaut.dng"]


def test_a_broken_camera_raw_is_a_422_and_a_raw_over_the_limit_a_413(make_client: ClientFactory) -> None:
    client = make_client(max_image_pixels=50_000)
    dng = raw_bytes("coins.dng")
    strip = dng.find(struct.pack("<HHI", 273, 4, 1))  # StripOffsets: the photosites, now past the end
    broken = dng[: strip + 8] + struct.pack("<I", len(dng) + 1000) + dng[strip + 12 :]
    for data, status, says in ((broken, 422, "camera RAW (DNG)"), (raw_bytes("astronaut.dng"), 413, "pixels")):
        response = client.post("/ingest", files=[("files", ("photo.dng", data))])
        assert response.status_code == status, response.text
        assert says in response.json()["detail"]
    assert client.get("/stats").json()["count"] == 0
