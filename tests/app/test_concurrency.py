from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from index.model.batching import BatchingEmbedder
from tests.app.conftest import ClientFactory, ingest_photos
from tests.conftest import IMAGES_DIR, encode_image


def test_searches_keep_answering_while_an_ingest_runs(client: TestClient) -> None:
    ingest_photos(client, "cat.png", "cat_crop.jpg", "rocket.jpg")
    files = [("files", (f"gen{n}.jpg", encode_image("JPEG", size=(640, 480), seed=100 + n))) for n in range(64)]
    ingest_done = threading.Event()
    answered_during_ingest: list[int] = []

    def run_ingest() -> int:
        try:
            return client.post("/ingest", files=files).status_code
        finally:
            ingest_done.set()

    with ThreadPoolExecutor(1) as pool:
        ingest = pool.submit(run_ingest)
        while not ingest_done.is_set():
            response = client.get("/search", params={"ref": "cat.png", "k": 100})
            assert response.status_code == 200
            names = [r["filename"] for r in response.json()["results"]]
            assert names[:1] == ["cat_crop.jpg"]
            if not ingest_done.is_set():
                answered_during_ingest.append(len(names))
        assert ingest.result() == 200
    assert len(answered_during_ingest) >= 2
    # Every answer is a consistent snapshot: the stored photos plus some of the new ones, never anything else.
    assert all(2 <= n <= 66 for n in answered_during_ingest)
    assert client.get("/stats").json()["count"] == 67


def test_the_same_image_uploaded_in_parallel_creates_one_record(client: TestClient) -> None:
    data = (IMAGES_DIR / "coffee.jpg").read_bytes()
    start = threading.Barrier(6)

    def post(n: int) -> dict[str, object]:
        start.wait()
        response = client.post("/ingest", files=[("files", (f"copy{n}.jpg", data))])
        assert response.status_code == 200
        result: dict[str, object] = response.json()["results"][0]
        return result

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(post, range(6)))
    assert sorted(r["status"] for r in results) == ["added"] + ["exists"] * 5
    assert len({r["id"] for r in results}) == 1
    assert client.get("/stats").json()["count"] == 1
    image = client.get(f"/images/{results[0]['id']}").json()
    assert sorted(image["names"]) == [f"copy{n}.jpg" for n in range(6)]


def test_concurrent_requests_share_forward_passes(make_client: ClientFactory) -> None:
    client = make_client(microbatch_wait_ms=300)
    embedder = client.app.state.index.embedder  # type: ignore[attr-defined]
    assert isinstance(embedder, BatchingEmbedder)
    names = ["cat.png", "coffee.jpg", "rocket.jpg", "coins.jpg", "camera.jpg", "astronaut.jpg"]
    alone = {n: client.post("/predict", files=[("files", (n, (IMAGES_DIR / n).read_bytes()))]).json() for n in names}
    passes_before = embedder.batcher.stats.passes
    start = threading.Barrier(len(names))

    def predict(name: str) -> dict[str, object]:
        start.wait()
        response = client.post("/predict", files=[("files", (name, (IMAGES_DIR / name).read_bytes()))])
        assert response.status_code == 200
        result: dict[str, object] = response.json()
        return result

    with ThreadPoolExecutor(len(names)) as pool:
        together = dict(zip(names, pool.map(predict, names), strict=True))
    assert embedder.batcher.stats.passes - passes_before < len(names)
    for name in names:
        top_alone = alone[name]["results"][0]["predictions"][0]
        top_together = together[name]["results"][0]["predictions"][0]  # type: ignore[index]
        assert top_together["class_index"] == top_alone["class_index"]
