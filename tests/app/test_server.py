"""End to end: the real service process, over HTTP, across a restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.app.server import running_server
from tests.conftest import IMAGES_DIR

PHOTOS = ["cat.png", "cat_crop.jpg", "cat_mirror.png", "coffee.jpg", "rocket.jpg", "coins.jpg"]


def test_the_service_ingests_searches_deletes_and_keeps_everything_across_a_restart(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    files = [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in PHOTOS]
    query = {"file": ("query.jpg", (IMAGES_DIR / "cat_recompressed.jpg").read_bytes())}

    with running_server(data_dir, log) as url, httpx.Client(base_url=url, timeout=120) as http:
        assert http.get("/health").json() == {"status": "ok"}
        ingested = http.post("/ingest", files=files)
        assert ingested.status_code == 200
        ids = {r["filename"]: r["id"] for r in ingested.json()["results"]}
        assert [r["status"] for r in ingested.json()["results"]] == ["added"] * len(PHOTOS)

        by_ref = http.get("/search", params={"ref": "cat.png", "k": 10})
        assert by_ref.status_code == 200
        assert by_ref.json()["results"][0]["filename"] in {"cat_crop.jpg", "cat_mirror.png"}

        by_upload = http.post("/search", files=query, params={"k": 3})
        assert by_upload.status_code == 200
        assert {r["filename"] for r in by_upload.json()["results"]} <= {"cat.png", "cat_crop.jpg", "cat_mirror.png"}

        assert http.delete(f"/images/{ids['coins.jpg']}").status_code == 200
        assert http.get("/search", params={"ref": "nope"}).status_code == 404
        assert http.post("/ingest", files=[("files", ("x.jpg", b"not an image"))]).status_code == 422

        after_delete = http.get("/search", params={"ref": "cat.png", "k": 10}).json()
        upload_after_delete = http.post("/search", files=query, params={"k": 3}).json()
        stats = http.get("/stats").json()
        assert "coins.jpg" not in [r["filename"] for r in after_delete["results"]]
        assert stats["count"] == len(PHOTOS) - 1

    with running_server(data_dir, log) as url, httpx.Client(base_url=url, timeout=120) as http:
        assert http.get("/search", params={"ref": "cat.png", "k": 10}).json() == after_delete
        assert http.post("/search", files=query, params={"k": 3}).json() == upload_after_delete
        assert http.get("/stats").json()["count"] == stats["count"]
        # Still in the trash after the restart; restored, it is found again; deleted for good, it is gone.
        assert http.get(f"/images/{ids['coins.jpg']}").json()["trashed_at"] is not None
        assert [i["id"] for i in http.get("/trash").json()["items"]] == [ids["coins.jpg"]]
        assert http.post(f"/trash/{ids['coins.jpg']}/restore").status_code == 200
        assert http.get("/search", params={"ref": "coins.jpg"}).status_code == 200
        assert http.delete(f"/images/{ids['coins.jpg']}").status_code == 200
        assert http.delete(f"/trash/{ids['coins.jpg']}").status_code == 200
        assert http.get(f"/images/{ids['coins.jpg']}").status_code == 404
        content = http.get(f"/images/{ids['rocket.jpg']}/content")
        assert content.content == (IMAGES_DIR / "rocket.jpg").read_bytes()
        again = http.post("/ingest", files=files[:1]).json()["results"][0]
        assert (again["status"], again["id"]) == ("exists", ids[PHOTOS[0]])
