from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from index.model.embedder import Embedder
from tests.app.conftest import SAMPLE_PHOTOS, ingest_photos
from tests.conftest import IMAGES_DIR


def test_images_are_listed_in_id_order_a_page_at_a_time(photo_client: TestClient, photo_ids: dict[str, int]) -> None:
    first = photo_client.get("/images", params={"offset": 0, "limit": 4}).json()
    second = photo_client.get("/images", params={"offset": 4, "limit": 4}).json()
    assert first["total"] == second["total"] == len(SAMPLE_PHOTOS)
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert ids == sorted(photo_ids.values())
    assert len(first["items"]) == 4


@pytest.mark.parametrize("params", [{"offset": -1}, {"limit": 0}, {"limit": 1001}, {"offset": "x"}])
def test_a_bad_page_is_422(photo_client: TestClient, params: dict[str, object]) -> None:
    assert photo_client.get("/images", params=params).status_code == 422


def test_an_image_shows_its_file_name_size_and_predictions(
    photo_client: TestClient, photo_ids: dict[str, int], embedder: Embedder
) -> None:
    image = photo_client.get(f"/images/{photo_ids['coffee.jpg']}").json()
    assert image["filename"] == "coffee.jpg"
    assert (image["width"], image["height"], image["format"]) == (600, 400, "JPEG")
    assert image["byte_size"] == (IMAGES_DIR / "coffee.jpg").stat().st_size
    assert image["predictions"][0]["label"] == "espresso"
    assert image["model"] == embedder.version


@pytest.mark.parametrize(("name", "content_type"), [("coffee.jpg", "image/jpeg"), ("cat.png", "image/png")])
def test_content_returns_the_stored_bytes_with_their_type(
    photo_client: TestClient, photo_ids: dict[str, int], name: str, content_type: str
) -> None:
    response = photo_client.get(f"/images/{photo_ids[name]}/content")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (IMAGES_DIR / name).read_bytes()


@pytest.mark.parametrize("path", ["/images/999999", "/images/999999/content"])
def test_an_unknown_image_is_404(photo_client: TestClient, path: str) -> None:
    response = photo_client.get(path)
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


@pytest.mark.parametrize("image_id", ["0", "-3", "abc", str(2**64)])
def test_an_invalid_image_id_is_422(photo_client: TestClient, image_id: str) -> None:
    assert photo_client.get(f"/images/{image_id}").status_code == 422
    assert photo_client.delete(f"/images/{image_id}").status_code == 422


def test_delete_moves_the_image_out_of_listing_and_search_into_the_trash(client: TestClient) -> None:
    ids = ingest_photos(client, "cat.png", "cat_crop.jpg", "rocket.jpg")
    response = client.delete(f"/images/{ids['cat_crop.jpg']}")
    assert response.status_code == 200
    assert response.json()["filename"] == "cat_crop.jpg" and response.json()["trashed_at"]
    assert client.get(f"/images/{ids['cat_crop.jpg']}").json()["trashed_at"] == response.json()["trashed_at"]
    assert client.delete(f"/images/{ids['cat_crop.jpg']}").status_code == 404
    results = client.get("/search", params={"ref": "cat.png"}).json()["results"]
    assert [r["filename"] for r in results] == ["rocket.jpg"]
    assert client.get("/stats").json()["count"] == 2


def test_content_deleted_for_good_can_be_ingested_again_under_a_new_id(client: TestClient) -> None:
    ids = ingest_photos(client, "coins.jpg")
    client.delete(f"/images/{ids['coins.jpg']}")
    client.delete(f"/trash/{ids['coins.jpg']}")
    again = ingest_photos(client, "coins.jpg")
    assert again["coins.jpg"] != ids["coins.jpg"]
    assert client.get(f"/images/{again['coins.jpg']}/content").content == (IMAGES_DIR / "coins.jpg").read_bytes()


def test_images_can_be_filtered_by_label_and_name(photo_client: TestClient) -> None:
    by_label = photo_client.get("/images", params={"label": "espresso"}).json()
    assert by_label["total"] == 1 and [i["filename"] for i in by_label["items"]] == ["coffee.jpg"]
    by_name = photo_client.get("/images", params={"name": "CAT", "limit": 1}).json()
    assert by_name["total"] == 2 and [i["filename"] for i in by_name["items"]] == ["cat.png"]
    assert photo_client.get("/images", params={"name": "cat", "label": "espresso"}).json()["total"] == 0
    unknown = photo_client.get("/images", params={"label": "no such class"})
    assert unknown.status_code == 422 and "no such class" in unknown.json()["detail"]


def test_a_thumbnail_is_a_small_jpeg_with_an_etag_and_answers_304_when_current(
    photo_client: TestClient, photo_ids: dict[str, int]
) -> None:
    response = photo_client.get(f"/images/{photo_ids['astronaut.jpg']}/thumbnail")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert "max-age" in response.headers["cache-control"]
    etag = response.headers["etag"]
    sha = photo_client.get(f"/images/{photo_ids['astronaut.jpg']}").json()["sha256"]
    assert sha in etag
    assert max(Image.open(io.BytesIO(response.content)).size) == 256

    again = photo_client.get(f"/images/{photo_ids['astronaut.jpg']}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = photo_client.get(f"/images/{photo_ids['coffee.jpg']}/thumbnail", headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_an_unknown_image_has_no_thumbnail(photo_client: TestClient) -> None:
    response = photo_client.get("/images/999999/thumbnail")
    assert response.status_code == 404 and "999999" in response.json()["detail"]
    assert photo_client.get("/images/0/thumbnail").status_code == 422


def test_deleting_an_image_for_good_removes_its_kept_thumbnail(client: TestClient, tmp_path: Path) -> None:
    ids = ingest_photos(client, "rocket.jpg", "coins.jpg")
    assert client.get(f"/images/{ids['rocket.jpg']}/thumbnail").status_code == 200
    kept = list((tmp_path / "data0" / "thumbnails").rglob("*.jpg"))
    assert len(kept) == 1
    assert client.delete(f"/images/{ids['rocket.jpg']}").status_code == 200
    assert kept[0].exists() and client.get(f"/images/{ids['rocket.jpg']}/thumbnail").status_code == 200
    assert client.delete(f"/trash/{ids['rocket.jpg']}").status_code == 200
    assert not kept[0].exists()
    assert client.get(f"/images/{ids['rocket.jpg']}/thumbnail").status_code == 404
    assert client.get(f"/images/{ids['coins.jpg']}/thumbnail").status_code == 200
