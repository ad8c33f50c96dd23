"""Words as labels in the API: `label=dog` or `label=cat` filters, GET /labels for autocomplete, and the labels
the library holds. Every configuration (the `backend` fixture)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.app.conftest import ingest_photos
from tests.conftest import IMAGES_DIR

CATS = {"cat.png", "cat_crop.jpg"}


def test_a_word_filters_searches_to_every_class_it_names(photo_client: TestClient) -> None:
    response = photo_client.get("/search", params={"ref": "coffee.jpg", "label": "cat"})
    assert response.status_code == 200
    assert {r["filename"] for r in response.json()["results"]} == CATS
    # The upload form sends it as a field beside the file.
    rocket = (IMAGES_DIR / "rocket.jpg").read_bytes()
    upload = photo_client.post("/search", files={"file": ("rocket.jpg", rocket)}, data={"label": "Cats"})
    assert upload.status_code == 200
    assert {r["filename"] for r in upload.json()["results"]} == CATS


def test_a_word_with_no_stored_image_finds_nothing_rather_than_failing(photo_client: TestClient) -> None:
    response = photo_client.get("/search", params={"ref": "cat.png", "label": "dog"})
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_the_library_listing_takes_words_too(photo_client: TestClient) -> None:
    listing = photo_client.get("/images", params={"label": "feline"}).json()
    assert listing["total"] == 2
    assert {i["filename"] for i in listing["items"]} == CATS


def test_an_unknown_word_is_a_422_that_suggests_close_ones(photo_client: TestClient) -> None:
    for response in (
        photo_client.get("/search", params={"ref": "cat.png", "label": "dgo"}),
        photo_client.get("/images", params={"label": "dgo"}),
    ):
        assert response.status_code == 422
        assert "no ImageNet class is called 'dgo'" in response.json()["detail"]
        assert "'dog'" in response.json()["detail"]


def test_labels_lists_words_by_prefix_with_their_class_counts(photo_client: TestClient) -> None:
    body = photo_client.get("/labels", params={"prefix": "Dog", "limit": 5}).json()
    assert body["labels"][0] == {"word": "dog", "classes": 118}
    assert len(body["labels"]) == 5
    assert photo_client.get("/labels", params={"prefix": "zzzz"}).json() == {"labels": []}
    assert photo_client.get("/labels", params={"limit": 0}).status_code == 422


def test_labels_in_the_library_count_the_live_images(client: TestClient) -> None:
    ids = ingest_photos(client, "cat.png", "cat_crop.jpg", "coffee.jpg")
    labels = {x["label"]: x for x in client.get("/labels/library").json()["labels"]}
    assert labels["tabby, tabby cat"] == {"label": "tabby, tabby cat", "class_index": 281, "images": 2}
    assert labels["espresso"]["images"] == 1
    counts = [x["images"] for x in labels.values()]
    assert counts == sorted(counts, reverse=True)
    assert client.delete(f"/images/{ids['cat.png']}").status_code == 200
    after = {x["label"]: x["images"] for x in client.get("/labels/library").json()["labels"]}
    assert after["tabby, tabby cat"] == 1
