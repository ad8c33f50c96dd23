"""`GET /duplicates` and `GET /images/{id}/duplicates`: groups, pagination, levels, bad input."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from index.duplicates import LEVEL_MEANINGS
from index.model.registry import resolve_embedding
from tests.app.conftest import ingest_photos
from tests.conftest import IMAGES_DIR

NEAR = resolve_embedding("default").duplicates.near


def _copy(name: str, edit: str) -> bytes:
    img = Image.open(IMAGES_DIR / name).convert("RGB")
    if edit == "mirror":
        img = ImageOps.mirror(img)
    elif edit == "small":
        img = img.resize((img.width // 2, img.height // 2))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=60)
    return buf.getvalue()


@pytest.fixture(scope="module")
def dup_client(photo_client: TestClient) -> TestClient:
    """The module's photos plus copies of two of them and a byte copy of a third."""
    files = [
        ("files", ("astronaut_mirror.jpg", _copy("astronaut.jpg", "mirror"))),
        ("files", ("astronaut_small.jpg", _copy("astronaut.jpg", "small"))),
        ("files", ("rocket_small.jpg", _copy("rocket.jpg", "small"))),
        ("files", ("coffee copy.jpg", (IMAGES_DIR / "coffee.jpg").read_bytes())),
    ]
    response = photo_client.post("/ingest", files=files)
    assert response.status_code == 200, response.text
    return photo_client


def test_groups_come_largest_first_with_the_kept_image_first(dup_client: TestClient) -> None:
    response = dup_client.get("/duplicates")
    assert response.status_code == 200, response.text
    body = response.json()
    # The astronaut and its two copies; the rocket and its copy; the cat and its crop; the coffee's byte copy.
    assert body["threshold"] == NEAR and body["total"] == len(body["groups"]) == 4
    assert len(body["groups"][0]["images"]) == 3
    first = body["groups"][0]
    assert first["images"][0]["filename"] == "astronaut.jpg"
    assert {i["filename"] for i in first["images"][1:]} == {"astronaut_mirror.jpg", "astronaut_small.jpg"}
    sims = [i["similarity"] for i in first["images"]]
    assert sims == sorted(sims, reverse=True)
    assert first["keep"] == first["images"][0]["id"] and first["images"][0]["similarity"] == 1.0
    assert all(NEAR <= i["similarity"] <= 1 for g in body["groups"] for i in g["images"])
    image = dup_client.get(f"/images/{first['keep']}").json()
    assert {k: v for k, v in first["images"][0].items() if k not in ("similarity", "evidence")} == image
    # Each group says why it is one: every copy proven by its pixels against the kept image.
    assert first["level"] == "near" and first["copies"] is True and "copies of one capture" in first["reason"]
    assert first["images"][0]["evidence"] is None
    for copy in first["images"][1:]:
        assert copy["evidence"]["copy"] is True and copy["evidence"]["kind"] in ("aligned", "framing")
    assert body["level"] == "near" and "copies of one capture" in body["meaning"]
    # A byte copy is one stored image under two names: a group of one image.
    byte_copy = next(g for g in body["groups"] if len(g["images"]) == 1)
    assert byte_copy["images"][0]["names"] == ["coffee.jpg", "coffee copy.jpg"]


def test_groups_are_paged_and_filtered_by_size(dup_client: TestClient) -> None:
    whole = dup_client.get("/duplicates").json()["groups"]
    pages = [dup_client.get("/duplicates", params={"offset": n, "limit": 1}).json() for n in range(5)]
    assert [p["total"] for p in pages] == [4, 4, 4, 4, 4]
    assert [p["groups"] for p in pages[:4]] == [[g] for g in whole] and pages[4]["groups"] == []
    big = dup_client.get("/duplicates", params={"min_size": 3}).json()
    assert big["total"] == 1 and big["groups"][0]["keep"] == whole[0]["keep"]


def test_levels_and_thresholds_change_what_is_grouped(dup_client: TestClient) -> None:
    levels = resolve_embedding("default").duplicates
    exact = dup_client.get("/duplicates", params={"level": "exact"}).json()
    loose = dup_client.get("/duplicates", params={"threshold": levels.floor}).json()
    similar = dup_client.get("/duplicates", params={"level": "similar"}).json()
    assert exact["threshold"] == levels.exact and exact["level"] == "exact"
    # Only the byte copy is the same picture: the mirrored and smaller copies are not.
    assert [[i["filename"] for i in g["images"]] for g in exact["groups"]] == [["coffee.jpg"]]
    assert loose["threshold"] == levels.floor and loose["level"] is None
    assert all(g["copies"] is False for g in similar["groups"] if len(g["images"]) > 1)
    assert sum(len(g["images"]) for g in loose["groups"]) >= sum(len(g["images"]) for g in similar["groups"])


def test_a_threshold_below_the_floor_is_refused_before_any_work(dup_client: TestClient) -> None:
    floor = resolve_embedding("default").duplicates.floor
    response = dup_client.get("/duplicates", params={"threshold": 0.0})
    assert response.status_code == 422 and f"between {floor} and 1" in response.json()["detail"]


def test_one_images_duplicates_leave_the_image_out(dup_client: TestClient, photo_ids: dict[str, int]) -> None:
    astronaut = dup_client.get("/duplicates").json()["groups"][0]["keep"]
    body = dup_client.get(f"/images/{astronaut}/duplicates").json()
    assert body["id"] == astronaut and body["threshold"] == NEAR
    assert {i["filename"] for i in body["images"]} == {"astronaut_mirror.jpg", "astronaut_small.jpg"}
    assert body["images"][0]["similarity"] >= body["images"][1]["similarity"] >= NEAR
    none = dup_client.get(f"/images/{photo_ids['camera.jpg']}/duplicates").json()
    assert none["images"] == []


def test_search_hits_say_which_are_copies(dup_client: TestClient) -> None:
    body = dup_client.get("/search", params={"ref": "rocket.jpg", "k": 3}).json()
    assert body["results"][0]["filename"] == "rocket_small.jpg" and body["results"][0]["duplicate"] is True
    assert [h["duplicate"] for h in body["results"][1:]] == [False, False]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/duplicates", {"level": "nearish"}),
        ("/duplicates", {"threshold": "1.5"}),
        ("/duplicates", {"threshold": "-0.1"}),
        ("/duplicates", {"level": "near", "threshold": "0.9"}),
        ("/duplicates", {"min_size": "1"}),
        ("/duplicates", {"limit": "0"}),
        ("/images/1/duplicates", {"level": "nearish"}),
        ("/images/1/duplicates", {"threshold": "2"}),
        ("/images/1/duplicates", {"threshold": "0.1"}),
    ],
)
def test_bad_input_is_a_422_with_a_detail(dup_client: TestClient, path: str, params: dict[str, str]) -> None:
    response = dup_client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_an_unknown_image_is_a_404(dup_client: TestClient) -> None:
    response = dup_client.get("/images/999999/duplicates")
    assert response.status_code == 404 and "999999" in response.json()["detail"]


def test_an_empty_index_has_no_groups(client: TestClient) -> None:
    assert client.get("/duplicates").json() == {
        "total": 0,
        "level": "near",
        "meaning": LEVEL_MEANINGS["near"],
        "threshold": NEAR,
        "offset": 0,
        "limit": 50,
        "groups": [],
    }


def test_a_new_copy_shows_up_in_the_next_answer(client: TestClient) -> None:
    ingest_photos(client, "coins.jpg")
    assert client.get("/duplicates").json()["total"] == 0
    client.post("/ingest", files=[("files", ("coins_small.jpg", _copy("coins.jpg", "small")))])
    assert client.get("/duplicates").json()["total"] == 1
