"""The trash through the API, on SQLite + FAISS and on PostgreSQL + Milvus: `DELETE /images/{id}` moves an
image there (out of search, listings, counts and duplicates, kept whole), `POST /trash/{id}/restore` brings it
back, `DELETE /trash/{id}` and `DELETE /trash` delete for good, and ingesting its bytes restores it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from index.storage.schema import ImageRow
from tests.app.conftest import ClientFactory, ingest_photos, upload
from tests.conftest import IMAGES_DIR

CATS = ("cat.png", "cat_crop.jpg", "cat_mirror.png")


def search_names(client: TestClient, ref: str = "cat.png") -> list[str]:
    response = client.get("/search", params={"ref": ref, "k": 20})
    assert response.status_code == 200, response.text
    return [r["filename"] for r in response.json()["results"]]


def in_duplicates(client: TestClient, image_id: int) -> bool:
    groups = client.get("/duplicates", params={"level": "similar", "limit": 1000}).json()["groups"]
    return any(image_id == i["id"] for g in groups for i in g["images"])


def test_a_deleted_image_leaves_search_listings_counts_and_duplicates_and_is_kept_whole(client: TestClient) -> None:
    ids = ingest_photos(client, *CATS, "rocket.jpg")
    crop = ids["cat_crop.jpg"]
    thumbnail = client.get(f"/images/{crop}/thumbnail").content
    assert in_duplicates(client, crop)

    response = client.delete(f"/images/{crop}")
    assert response.status_code == 200, response.text
    trashed = response.json()
    assert trashed["id"] == crop and trashed["filename"] == "cat_crop.jpg" and trashed["trashed_at"]

    assert "cat_crop.jpg" not in search_names(client)
    by_upload = client.post("/search", files={"file": ("q.jpg", (IMAGES_DIR / "cat_crop.jpg").read_bytes())})
    assert crop not in [r["id"] for r in by_upload.json()["results"]]
    listing = client.get("/images").json()
    assert listing["total"] == 3 and crop not in [i["id"] for i in listing["items"]]
    assert client.get("/images", params={"name": "crop"}).json()["total"] == 0
    stats = client.get("/stats").json()
    assert (stats["count"], stats["trashed"]) == (3, 1)
    assert not in_duplicates(client, crop)
    of_cat = client.get(f"/images/{ids['cat.png']}/duplicates", params={"level": "similar"}).json()["images"]
    assert crop not in [i["id"] for i in of_cat]
    # Kept whole, and shown as being in the trash.
    assert client.get(f"/images/{crop}").json() == trashed
    assert client.get(f"/images/{crop}/content").content == (IMAGES_DIR / "cat_crop.jpg").read_bytes()
    assert client.get(f"/images/{crop}/thumbnail").content == thumbnail
    # Named by id, hash or name, it is not searched from: it is in the trash.
    for ref in (str(crop), trashed["sha256"], "cat_crop.jpg"):
        refused = client.get("/search", params={"ref": ref})
        assert refused.status_code == 404 and "in the trash" in refused.json()["detail"], ref
    listed = client.get("/trash").json()
    assert (listed["total"], [i["id"] for i in listed["items"]]) == (1, [crop])


def test_a_restored_image_is_back_everywhere_under_its_id(client: TestClient) -> None:
    ids = ingest_photos(client, *CATS)
    before = search_names(client)
    crop = ids["cat_crop.jpg"]
    client.delete(f"/images/{crop}")
    response = client.post(f"/trash/{crop}/restore")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == crop and response.json()["trashed_at"] is None
    assert search_names(client) == before
    assert client.get("/images").json()["total"] == 3 and client.get("/trash").json()["total"] == 0
    assert client.get("/stats").json()["count"] == 3
    assert in_duplicates(client, crop)


def test_deleting_for_good_removes_row_names_bytes_vector_and_thumbnail(client: TestClient, tmp_path: Path) -> None:
    ids = ingest_photos(client, "rocket.jpg", "coins.jpg")
    rocket = ids["rocket.jpg"]
    assert client.get(f"/images/{rocket}/thumbnail").status_code == 200
    kept = list((tmp_path / "data0" / "thumbnails").rglob("*.jpg"))
    assert len(kept) == 1
    client.delete(f"/images/{rocket}")
    assert kept[0].exists()  # the trash view shows it
    response = client.delete(f"/trash/{rocket}")
    assert response.status_code == 200 and response.json()["filename"] == "rocket.jpg"
    assert not kept[0].exists()
    for path in (f"/images/{rocket}", f"/images/{rocket}/content", f"/images/{rocket}/thumbnail"):
        assert client.get(path).status_code == 404, path
    assert client.get("/search", params={"ref": "rocket.jpg"}).status_code == 404
    assert client.get("/trash").json()["total"] == 0 and client.get("/stats").json()["count"] == 1
    # The same bytes again are a new image, under a new id.
    again = ingest_photos(client, "rocket.jpg")["rocket.jpg"]
    assert again > rocket and client.get(f"/images/{again}/content").content == (IMAGES_DIR / "rocket.jpg").read_bytes()


def test_emptying_the_trash_deletes_only_what_is_in_it_and_says_how_many(client: TestClient) -> None:
    ids = ingest_photos(client, "rocket.jpg", "coins.jpg", "coffee.jpg")
    client.delete(f"/images/{ids['rocket.jpg']}")
    client.delete(f"/images/{ids['coins.jpg']}")
    response = client.delete("/trash")
    assert response.status_code == 200 and response.json() == {"purged": 2}
    assert client.delete("/trash").json() == {"purged": 0}
    assert [i["filename"] for i in client.get("/images").json()["items"]] == ["coffee.jpg"]


def test_the_trash_is_paged_like_the_library_most_recently_trashed_first(client: TestClient) -> None:
    ids = ingest_photos(client, "rocket.jpg", "coins.jpg", "coffee.jpg", "camera.jpg")
    order = ["coffee.jpg", "rocket.jpg", "camera.jpg"]
    for name in order:
        client.delete(f"/images/{ids[name]}")
    first = client.get("/trash", params={"limit": 2}).json()
    second = client.get("/trash", params={"offset": 2, "limit": 2}).json()
    assert set(first) == set(client.get("/images").json()) == {"total", "offset", "limit", "items"}
    assert (first["total"], first["offset"], first["limit"]) == (3, 0, 2)
    assert [i["filename"] for i in first["items"] + second["items"]] == order[::-1]
    assert all(i["trashed_at"] for i in first["items"])
    assert client.get("/trash", params={"limit": 0}).status_code == 422


def test_ingesting_the_bytes_of_a_trashed_image_restores_it(client: TestClient) -> None:
    ids = ingest_photos(client, "coffee.jpg", "rocket.jpg")
    coffee = ids["coffee.jpg"]
    client.delete(f"/images/{coffee}")
    response = client.post("/ingest", files=upload("coffee.jpg", "coffee.jpg", "coins.jpg"))
    assert response.status_code == 200, response.text
    assert [(r["status"], r["id"]) for r in response.json()["results"]] == [
        ("restored", coffee),
        ("exists", coffee),
        ("added", response.json()["results"][2]["id"]),
    ]
    assert client.get(f"/images/{coffee}").json()["trashed_at"] is None
    assert client.get("/trash").json()["total"] == 0 and client.get("/stats").json()["count"] == 3
    # The compatibility route stores nothing, and answers as it always did.
    client.delete(f"/images/{coffee}")
    compat = client.post("/upload-images/", files=upload("coffee.jpg"))
    assert compat.status_code == 200 and set(compat.json()) == {"message", "predictions", "embeddings"}
    assert compat.json()["message"] == "You uploaded 1 image(s)"
    assert client.get(f"/images/{coffee}").json()["trashed_at"] is not None


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("post", "/trash/{live}/restore", 404, "not in the trash"),
        ("delete", "/trash/{live}", 404, "not in the trash"),
        ("post", "/trash/999999/restore", 404, "no image with id 999999"),
        ("delete", "/trash/999999", 404, "no image with id 999999"),
        ("post", "/trash/{purged}/restore", 404, "no image with id"),
        ("delete", "/trash/{purged}", 404, "no image with id"),
        ("delete", "/images/{trashed}", 404, "in the trash"),
        ("get", "/images/{trashed}/duplicates", 404, "in the trash"),
        ("post", "/trash/0/restore", 422, ""),
        ("delete", "/trash/abc", 422, ""),
    ],
)
def test_a_bad_trash_request_is_a_clear_4xx_and_changes_nothing(
    client: TestClient, method: str, path: str, status: int, says: str
) -> None:
    ids = ingest_photos(client, "rocket.jpg", "coins.jpg", "coffee.jpg")
    live, trashed, purged = ids["rocket.jpg"], ids["coins.jpg"], ids["coffee.jpg"]
    client.delete(f"/images/{trashed}")
    client.delete(f"/images/{purged}")
    client.delete(f"/trash/{purged}")
    response = client.request(method, path.format(live=live, trashed=trashed, purged=purged))
    assert response.status_code == status, response.text
    assert says in str(response.json()["detail"])
    assert [i["id"] for i in client.get("/images").json()["items"]] == [live]
    assert [i["id"] for i in client.get("/trash").json()["items"]] == [trashed]
    assert client.get("/stats").json()["count"] == 1


def test_images_trashed_longer_than_the_retention_are_deleted_for_good_at_start(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    first = make_client(data_dir=tmp_path / "kept")
    ids = ingest_photos(first, "rocket.jpg", "coins.jpg", "coffee.jpg")
    first.delete(f"/images/{ids['rocket.jpg']}")
    first.delete(f"/images/{ids['coins.jpg']}")
    with first.app.state.index.store.session() as s:  # type: ignore[attr-defined]
        aged = datetime.now(UTC) - timedelta(days=8)
        s.execute(update(ImageRow).where(ImageRow.id == ids["rocket.jpg"]).values(trashed_at=aged))
    first.__exit__(None, None, None)

    second = make_client(data_dir=tmp_path / "kept", trash_retention_days=7)
    assert [i["id"] for i in second.get("/trash").json()["items"]] == [ids["coins.jpg"]]
    assert second.get(f"/images/{ids['rocket.jpg']}").status_code == 404
    assert second.get("/stats").json()["trash_retention_days"] == 7
