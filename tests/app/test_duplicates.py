"""`GET /duplicates` and `GET /images/{id}/duplicates`: groups, pagination, levels, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from index.duplicates import LEVEL_MEANINGS
from index.model.registry import resolve_embedding
from tests.app.conftest import ClientFactory, ingest_photos
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


# --- resolving a group, and "not duplicates" decisions -----------------------------------------------------

LEVELS = [{"level": "exact"}, {"level": "near"}, {"level": "similar"}, {"threshold": 0.5}]


def paired(client: TestClient, a: int, b: int, **params: object) -> bool:
    """Whether a group has `a` and `b` as its kept image and a copy of it, either way round."""
    groups = client.get("/duplicates", params={"limit": 1000, **params}).json()["groups"]
    return any({a, b} <= {i["id"] for i in g["images"]} and g["keep"] in (a, b) for g in groups)


@pytest.fixture
def copies(client: TestClient) -> dict[str, int]:
    """A fresh API with the astronaut, two edited copies of it, and the rocket with one."""
    ids = ingest_photos(client, "astronaut.jpg", "rocket.jpg", "coffee.jpg")
    files = [
        ("files", ("astronaut_mirror.jpg", _copy("astronaut.jpg", "mirror"))),
        ("files", ("astronaut_small.jpg", _copy("astronaut.jpg", "small"))),
        ("files", ("rocket_small.jpg", _copy("rocket.jpg", "small"))),
    ]
    response = client.post("/ingest", files=files)
    assert response.status_code == 200, response.text
    return {**ids, **{r["filename"]: r["id"] for r in response.json()["results"]}}


def test_resolving_a_group_trashes_the_copies_and_records_their_names_on_the_kept_image(
    client: TestClient, copies: dict[str, int]
) -> None:
    astronaut, mirror, small = copies["astronaut.jpg"], copies["astronaut_mirror.jpg"], copies["astronaut_small.jpg"]
    response = client.post("/duplicates/resolve", json={"keep": astronaut, "remove": [mirror, small]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kept"]["id"] == astronaut and body["kept"]["names"] == ["astronaut.jpg"]
    assert sorted(r["name"] for r in body["kept"]["replaced"]) == ["astronaut_mirror.jpg", "astronaut_small.jpg"]
    assert sorted(t["id"] for t in body["trashed"]) == sorted([mirror, small]) and all(
        t["trashed_at"] for t in body["trashed"]
    )
    assert client.get(f"/images/{astronaut}").json() == body["kept"]
    assert sorted(i["id"] for i in client.get("/trash").json()["items"]) == sorted([mirror, small])
    groups = client.get("/duplicates").json()["groups"]
    assert [g["keep"] for g in groups] == [copies["rocket.jpg"]]  # the kept image is no group of its own
    # Undone by restoring the copies.
    for image_id in (mirror, small):
        assert client.post(f"/trash/{image_id}/restore").status_code == 200
    assert paired(client, astronaut, mirror) and paired(client, astronaut, small)


def test_groups_among_some_images_are_those_of_get_duplicates_restricted_to_them(dup_client: TestClient) -> None:
    every = dup_client.get("/duplicates").json()
    listing = dup_client.get("/images", params={"limit": 1000}).json()["items"]
    ids = {i["filename"]: i["id"] for i in listing}
    among = [ids["astronaut.jpg"], ids["astronaut_small.jpg"], ids["rocket.jpg"], ids["camera.jpg"]]
    response = dup_client.post("/duplicates/among", json={"ids": among})
    assert response.status_code == 200, response.text
    body = response.json()
    (astronaut,) = [g for g in every["groups"] if g["keep"] == ids["astronaut.jpg"]]
    assert set(body) == set(every) and body["total"] == 1 and body["level"] == "near"
    (group,) = body["groups"]
    assert [i["filename"] for i in group["images"]] == ["astronaut.jpg", "astronaut_small.jpg"]
    assert group["images"] == [i for i in astronaut["images"] if i["id"] in among]
    assert group["copies"] is True and group["keep"] == ids["astronaut.jpg"]
    similar = dup_client.post("/duplicates/among", json={"ids": among, "level": "similar", "limit": 1}).json()
    assert similar["level"] == "similar" and similar["limit"] == 1 and len(similar["groups"]) <= 1


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"ids": [10**9]}, 404, "no images with ids [1000000000]"),
        ({"ids": []}, 422, "ids"),
        ({"ids": [1], "level": "close"}, 422, "level"),
        ({"ids": [1], "threshold": 0.2}, 422, "threshold must be between"),
        ({"ids": [1], "level": "near", "threshold": 0.9}, 422, "not both"),
    ],
)
def test_groups_among_bad_ids_or_levels_are_a_clear_4xx(
    dup_client: TestClient, body: dict[str, object], status: int, says: str
) -> None:
    before = dup_client.get("/stats").json()["count"]
    response = dup_client.post("/duplicates/among", json=body)
    assert response.status_code == status and says in str(response.json()["detail"]), response.text
    assert dup_client.get("/stats").json()["count"] == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"keep": "astronaut.jpg", "remove": []}, 422),
        ({"keep": "astronaut.jpg", "remove": ["astronaut.jpg"]}, 422),
        ({"keep": "astronaut.jpg", "remove": ["astronaut_small.jpg", "astronaut_small.jpg"]}, 422),
        ({"keep": "astronaut.jpg", "remove": ["astronaut_small.jpg", 999_999]}, 404),
        ({"keep": 999_999, "remove": ["astronaut_small.jpg"]}, 404),
        ({"keep": "astronaut.jpg", "remove": ["coffee.jpg"]}, 404),  # in the trash
        ({"keep": "astronaut.jpg"}, 422),
        ({"keep": 0, "remove": ["astronaut_small.jpg"]}, 422),
    ],
)
def test_resolving_with_bad_ids_is_a_clear_4xx_and_changes_nothing(
    client: TestClient, copies: dict[str, int], body: dict[str, object], status: int
) -> None:
    client.delete(f"/images/{copies['coffee.jpg']}")
    before = client.get("/images").json()

    def ids(value: object) -> object:
        return copies[value] if isinstance(value, str) else value

    sent = {k: [ids(v) for v in value] if isinstance(value, list) else ids(value) for k, value in body.items()}
    response = client.post("/duplicates/resolve", json=sent)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert client.get("/images").json() == before
    assert client.get("/trash").json()["total"] == 1


def test_a_dismissed_pair_is_never_grouped_again_at_any_level_and_the_decision_can_be_undone(
    client: TestClient, copies: dict[str, int]
) -> None:
    astronaut, mirror, small = copies["astronaut.jpg"], copies["astronaut_mirror.jpg"], copies["astronaut_small.jpg"]
    assert paired(client, astronaut, mirror)
    response = client.post("/duplicates/dismiss", json={"ids": [astronaut, mirror]})
    assert response.status_code == 201, response.text
    decision = response.json()
    assert set(decision) == {"id", "created_at", "sha256s", "images"}
    assert sorted(i["id"] for i in decision["images"]) == sorted([astronaut, mirror]) and len(decision["sha256s"]) == 2
    for level in LEVELS:
        assert not paired(client, astronaut, mirror, **level), level
        others = client.get(f"/images/{astronaut}/duplicates", params=level).json()["images"]
        assert mirror not in [i["id"] for i in others], level
    assert paired(client, astronaut, small)
    listed = client.get("/duplicates/dismissed").json()
    assert (listed["total"], [d["id"] for d in listed["items"]]) == (1, [decision["id"]])

    undone = client.delete(f"/duplicates/dismissed/{decision['id']}")
    assert undone.status_code == 200 and undone.json()["id"] == decision["id"]
    assert paired(client, astronaut, mirror)
    assert client.get("/duplicates/dismissed").json()["total"] == 0
    assert client.delete(f"/duplicates/dismissed/{decision['id']}").status_code == 404


def test_a_decision_holds_after_a_restart_and_a_reingest(make_client: ClientFactory, tmp_path: Path) -> None:
    first = make_client(data_dir=tmp_path / "kept")
    ids = ingest_photos(first, "rocket.jpg")
    small_bytes = _copy("rocket.jpg", "small")
    small = first.post("/ingest", files=[("files", ("rocket_small.jpg", small_bytes))]).json()["results"][0]["id"]
    rocket = ids["rocket.jpg"]
    assert first.post("/duplicates/dismiss", json={"ids": [rocket, small]}).status_code == 201
    first.__exit__(None, None, None)

    second = make_client(data_dir=tmp_path / "kept")
    assert not paired(second, rocket, small, level="similar")
    # Ingested again, trashed and purged, then ingested once more (a new id): still not a pair.
    again = second.post("/ingest", files=[("files", ("rocket again.jpg", small_bytes))]).json()["results"][0]
    assert again["status"] == "exists" and not paired(second, rocket, small, level="similar")
    second.delete(f"/images/{small}")
    second.delete(f"/trash/{small}")
    fresh = second.post("/ingest", files=[("files", ("rocket_small.jpg", small_bytes))]).json()["results"][0]
    assert fresh["status"] == "added" and fresh["id"] != small
    assert not paired(second, rocket, fresh["id"], level="similar")
    assert [i["id"] for i in second.get("/duplicates/dismissed").json()["items"][0]["images"]] in (
        [rocket, fresh["id"]],
        [fresh["id"], rocket],
    )


@pytest.mark.parametrize(
    ("ids", "status"),
    [
        (["rocket.jpg"], 422),
        ([], 422),
        (["rocket.jpg", "rocket.jpg"], 422),
        (["rocket.jpg", 999_999], 404),
        (["rocket.jpg", 0], 422),
        ("rocket.jpg", 422),
    ],
)
def test_a_bad_decision_is_a_clear_4xx_and_changes_nothing(
    client: TestClient, copies: dict[str, int], ids: object, status: int
) -> None:
    sent = [copies[i] if isinstance(i, str) else i for i in ids] if isinstance(ids, list) else ids
    response = client.post("/duplicates/dismiss", json={"ids": sent})
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert client.get("/duplicates/dismissed").json()["total"] == 0
    assert paired(client, copies["rocket.jpg"], copies["rocket_small.jpg"])


def test_decisions_are_paged_newest_first(client: TestClient, copies: dict[str, int]) -> None:
    made = [
        client.post("/duplicates/dismiss", json={"ids": [copies[a], copies[b]]}).json()["id"]
        for a, b in [
            ("astronaut.jpg", "astronaut_small.jpg"),
            ("rocket.jpg", "rocket_small.jpg"),
            ("coffee.jpg", "rocket.jpg"),
        ]
    ]
    page = client.get("/duplicates/dismissed", params={"offset": 1, "limit": 1}).json()
    assert (page["total"], page["offset"], page["limit"], [d["id"] for d in page["items"]]) == (3, 1, 1, [made[1]])
    assert client.get("/duplicates/dismissed", params={"limit": 0}).status_code == 422
    assert client.delete("/duplicates/dismissed/0").status_code == 422
