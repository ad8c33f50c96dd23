from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import SAMPLE_PHOTOS, ClientFactory, ingest_photos
from tests.conftest import IMAGES_DIR


def test_search_by_name_finds_the_cat_crop_first_and_leaves_the_reference_out(
    photo_client: TestClient, photo_ids: dict[str, int]
) -> None:
    response = photo_client.get("/search", params={"ref": "cat.png", "k": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == {"id": photo_ids["cat.png"], "filename": "cat.png", "sha256": body["query"]["sha256"]}
    names = [r["filename"] for r in body["results"]]
    assert names[0] == "cat_crop.jpg"
    assert "cat.png" not in names
    assert len(names) == len(SAMPLE_PHOTOS) - 1
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["predictions"] for r in body["results"])


def test_search_by_id_and_by_sha256_give_the_same_answer_as_by_name(photo_client: TestClient) -> None:
    by_name = photo_client.get("/search", params={"ref": "coffee.jpg"}).json()
    query = by_name["query"]
    for ref in (str(query["id"]), query["sha256"], query["sha256"].upper()):
        assert photo_client.get("/search", params={"ref": ref}).json() == by_name


def test_euclidean_scores_are_distances_smallest_first(photo_client: TestClient) -> None:
    cosine = photo_client.get("/search", params={"ref": "cat.png", "metric": "cosine"}).json()["results"]
    euclid = photo_client.get("/search", params={"ref": "cat.png", "metric": "euclidean"}).json()["results"]
    assert [r["id"] for r in euclid] == [r["id"] for r in cosine]
    distances = [r["score"] for r in euclid]
    assert distances == sorted(distances)
    for c, e in zip(cosine, euclid, strict=True):
        assert e["score"] == pytest.approx((2 - 2 * c["score"]) ** 0.5, abs=1e-4)


def test_k_limits_the_number_of_results(photo_client: TestClient) -> None:
    assert len(photo_client.get("/search", params={"ref": "cat.png", "k": 2}).json()["results"]) == 2


def test_label_keeps_only_images_predicted_as_that_class(photo_client: TestClient) -> None:
    response = photo_client.get("/search", params={"ref": "cat.png", "label": "espresso"})
    assert response.status_code == 200
    assert [r["filename"] for r in response.json()["results"]] == ["coffee.jpg"]


def test_an_empty_label_means_no_filter(photo_client: TestClient) -> None:
    response = photo_client.get("/search", params={"ref": "cat.png", "label": ""})
    assert len(response.json()["results"]) == len(SAMPLE_PHOTOS) - 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"ref": "no-such-file.jpg"}, 404),
        ({"ref": "999999"}, 404),
        ({"ref": "0" * 64}, 404),
        ({"ref": "99999999999999999999999999"}, 404),
        ({"ref": "²"}, 404),
        ({"ref": "../../../etc/passwd"}, 404),
        ({"ref": "cat.png", "k": 0}, 422),
        ({"ref": "cat.png", "k": 1001}, 422),
        ({"ref": "cat.png", "k": "ten"}, 422),
        ({"ref": "cat.png", "metric": "manhattan"}, 422),
        ({"ref": "cat.png", "label": "no such class"}, 422),
        ({}, 422),
        ({"ref": ""}, 422),
    ],
)
def test_a_bad_search_is_a_4xx_with_a_detail(photo_client: TestClient, params: dict[str, object], status: int) -> None:
    response = photo_client.get("/search", params=params)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_a_name_shared_by_two_images_is_ambiguous(client: TestClient) -> None:
    for name in ("rocket.jpg", "coffee.jpg"):
        data = (IMAGES_DIR / name).read_bytes()
        assert client.post("/ingest", files=[("files", ("photo.jpg", data))]).status_code == 200
    response = client.get("/search", params={"ref": "photo.jpg"})
    assert response.status_code == 409
    assert "2 different images" in response.json()["detail"]


def test_search_by_upload_finds_the_stored_copy_first_and_stores_nothing(photo_client: TestClient) -> None:
    data = (IMAGES_DIR / "cat_mirror.png").read_bytes()
    before = photo_client.get("/stats").json()["count"]
    response = photo_client.post("/search", files={"file": ("query.jpg", data)}, params={"k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["query"]["id"] is None
    assert body["query"]["filename"] == "query.jpg"
    assert [r["filename"] for r in body["results"]][:1] == ["cat.png"]
    assert len(body["results"]) == 3
    assert photo_client.get("/stats").json()["count"] == before


def test_search_by_upload_of_a_stored_image_scores_it_as_identical(photo_client: TestClient) -> None:
    data = (IMAGES_DIR / "rocket.jpg").read_bytes()
    best = photo_client.post("/search", files={"file": ("r.jpg", data)}, params={"k": 1}).json()["results"][0]
    assert best["filename"] == "rocket.jpg"
    assert best["score"] == pytest.approx(1.0, abs=1e-3)


def test_search_in_an_empty_index_finds_nothing(client: TestClient) -> None:
    data = (IMAGES_DIR / "rocket.jpg").read_bytes()
    response = client.post("/search", files={"file": ("r.jpg", data)})
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_rank_scores_exactly_the_given_ids_including_the_reference(
    photo_client: TestClient, photo_ids: dict[str, int]
) -> None:
    ids = [photo_ids[n] for n in ("cat.png", "rocket.jpg", "cat_crop.jpg")]
    response = photo_client.post("/rank", json={"ref": "cat.png", "ids": ids})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["cat.png", "cat_crop.jpg", "rocket.jpg"]
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    search = photo_client.get("/search", params={"ref": "cat.png"}).json()["results"]
    assert results[1]["score"] == pytest.approx(search[0]["score"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"ref": "cat.png", "ids": [999999]}, 404),
        ({"ref": "nope.png", "ids": [1]}, 404),
        ({"ref": "cat.png", "ids": []}, 422),
        ({"ref": "cat.png", "ids": [1], "metric": "l1"}, 422),
        ({"ref": "cat.png", "ids": [2**70]}, 422),
    ],
)
def test_a_bad_rank_request_is_a_4xx(photo_client: TestClient, body: dict[str, object], status: int) -> None:
    assert photo_client.post("/rank", json=body).status_code == status


def test_search_results_survive_a_restart(make_client: ClientFactory, tmp_path) -> None:
    first = make_client(data_dir=tmp_path / "kept")
    ingest_photos(first, *SAMPLE_PHOTOS)
    before = first.get("/search", params={"ref": "cat.png"}).json()
    first.__exit__(None, None, None)
    second = make_client(data_dir=tmp_path / "kept")
    assert second.get("/search", params={"ref": "cat.png"}).json() == before
