"""`POST /images/prune` and `GET /images/lookup`, on SQLite + FAISS and on PostgreSQL + Milvus: the images whose
recorded files are all gone from the server's disk go to the trash (never an upload); a reference resolves to
its image as `GET /search` resolves it."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from index.service import ImageIndex
from tests.app.conftest import ingest_photos
from tests.conftest import IMAGES_DIR


def test_prune_moves_the_images_whose_files_are_gone_and_a_dry_run_moves_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat.png", "coffee.jpg", "camera.jpg"):
        shutil.copy(IMAGES_DIR / name, folder / name)
    index: ImageIndex = client.app.state.index
    index.ingest_folder(folder)  # found in a folder, as the CLI stores images: with their paths
    uploaded = ingest_photos(client, "rocket.jpg")["rocket.jpg"]
    (folder / "coffee.jpg").unlink()

    dry = client.post("/images/prune", params={"dry_run": "true"})
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert (body["dry_run"], body["total"]) == (True, 1)
    assert body["items"][0]["filename"] == "coffee.jpg" and body["items"][0]["paths"] == [str(folder / "coffee.jpg")]
    assert client.get("/trash").json()["total"] == 0

    done = client.post("/images/prune").json()
    assert (done["dry_run"], [i["id"] for i in done["items"]]) == (False, [i["id"] for i in body["items"]])
    assert [i["filename"] for i in client.get("/trash").json()["items"]] == ["coffee.jpg"]
    assert {i["filename"] for i in client.get("/images").json()["items"]} == {"cat.png", "camera.jpg", "rocket.jpg"}
    assert client.get(f"/images/{uploaded}").json()["trashed_at"] is None


def test_prune_refuses_a_bad_dry_run_and_changes_nothing(client: TestClient) -> None:
    ingest_photos(client, "cat.png")
    response = client.post("/images/prune", params={"dry_run": "maybe"})
    assert response.status_code == 422
    assert client.get("/images").json()["total"] == 1


def test_lookup_resolves_an_id_a_hash_or_a_name_and_says_what_is_wrong(client: TestClient) -> None:
    ids = ingest_photos(client, "cat.png", "coffee.jpg")
    cat = client.get(f"/images/{ids['cat.png']}").json()
    for ref in (str(cat["id"]), cat["sha256"], "cat.png"):
        found = client.get("/images/lookup", params={"ref": ref})
        assert found.status_code == 200 and found.json() == cat, ref
    unknown = client.get("/images/lookup", params={"ref": "nope.png"})
    assert unknown.status_code == 404 and "nope.png" in unknown.json()["detail"]
    client.delete(f"/images/{ids['coffee.jpg']}")
    trashed = client.get("/images/lookup", params={"ref": "coffee.jpg"})
    assert trashed.status_code == 404 and "in the trash" in trashed.json()["detail"]
    assert client.get("/images/lookup").status_code == 422
