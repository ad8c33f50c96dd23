from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.app.conftest import ClientFactory, upload


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_metrics_report_latency_by_route_images_stored_batches_queue_and_ingest_errors(
    make_client: ClientFactory,
) -> None:
    client: TestClient = make_client()
    assert client.post("/ingest", files=upload("cat.png", "coffee.jpg", "rocket.jpg")).status_code == 200
    assert client.post("/ingest", files=[("files", ("bad.jpg", b"not an image"))]).status_code == 422
    assert client.get("/search", params={"ref": "cat.png"}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "imgsim_images_stored") == 3
    assert _value(text, "imgsim_inference_queue_images") == 0
    assert _value(text, "imgsim_ready") == 1
    assert _value(text, "imgsim_inference_batch_size_sum") >= 3  # three images went through the model
    assert _value(text, 'imgsim_ingest_errors_total{status="422"}') == 1
    for route in ("/ingest", "/search"):
        assert re.search(rf'http_request_duration_seconds_count{{handler="{route}",method="(POST|GET)"', text), route
    assert 'handler="/metrics"' not in text
