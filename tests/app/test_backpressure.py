"""The inference queue is bounded: beyond it, and past the per-request deadline, requests get 503 + Retry-After."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.testclient import TestClient

from index.model.batching import BatchingEmbedder
from tests.app.conftest import ClientFactory, upload


@contextmanager
def model_held_busy(client: TestClient) -> Iterator[threading.Event]:
    """Hold the real forward pass at its start until the block ends (as a long batch would); yields the event
    set once a forward pass has begun."""
    embedder = client.app.state.index.embedder  # type: ignore[attr-defined]
    assert isinstance(embedder, BatchingEmbedder)
    batcher = embedder.batcher
    real_forward, started, release = batcher._forward, threading.Event(), threading.Event()

    def held(crops: Any) -> Any:
        started.set()
        release.wait(60)
        return real_forward(crops)

    batcher._forward = held
    try:
        yield started
    finally:
        release.set()
        batcher._forward = real_forward


def _wait_queued(client: TestClient, count: int) -> None:
    batcher = client.app.state.index.embedder.batcher  # type: ignore[attr-defined]
    for _ in range(1000):
        if batcher.queued >= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"queue never reached {count}")


def test_requests_beyond_the_queue_limit_get_503_with_retry_after_and_the_queued_ones_finish(
    make_client: ClientFactory,
) -> None:
    client = make_client(inference_queue_limit=1, batch_size=1, request_timeout_s=0)
    with ThreadPoolExecutor(2) as pool, model_held_busy(client) as started:
        first = pool.submit(client.post, "/embed", files=upload("cat.png"))
        assert started.wait(30)
        second = pool.submit(client.post, "/embed", files=upload("coffee.jpg"))
        _wait_queued(client, 1)
        refused = client.post("/predict", files=upload("rocket.jpg"))
        assert refused.status_code == 503
        assert refused.headers["retry-after"].isdigit()
        assert "IMGSIM_INFERENCE_QUEUE_LIMIT" in refused.json()["detail"]
        ingest_refused = client.post("/ingest", files=upload("rocket.jpg"))
        assert ingest_refused.status_code == 503
    assert first.result().status_code == 200
    assert second.result().status_code == 200
    assert client.get("/stats").json()["count"] == 0  # the refused ingest stored nothing
    metrics = client.get("/metrics").text
    assert "imgsim_overload_rejections_total 2.0" in metrics
    assert 'imgsim_ingest_errors_total{status="503"} 1.0' in metrics


def test_a_request_that_waits_past_its_deadline_gets_503(make_client: ClientFactory) -> None:
    client = make_client(request_timeout_s=0.5)
    with ThreadPoolExecutor(1) as pool, model_held_busy(client) as started:
        first = pool.submit(client.post, "/embed", files=upload("cat.png"))
        assert started.wait(30)
        late = client.post("/embed", files=upload("coffee.jpg"))
        assert late.status_code == 503
        assert late.headers["retry-after"].isdigit()
        assert "0.5 s" in late.json()["detail"]
    assert first.result().status_code in (200, 503)  # it, too, waited past the deadline
    assert client.post("/embed", files=upload("coffee.jpg")).status_code == 200


def test_routes_needing_the_index_answer_503_with_retry_after_until_it_is_open(tmp_path) -> None:
    from app.main import create_app
    from index.config import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))
    client = TestClient(app)  # no `with`: the lifespan has not opened the index
    for response in (client.get("/stats"), client.get("/ready")):
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
    assert isinstance(client.get("/stats").json()["detail"], str)
    assert client.get("/health").status_code == httpx.codes.OK
