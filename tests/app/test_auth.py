from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import ClientFactory, upload

KEYS = ["reader-key:read", "writer-key:write"]


@pytest.fixture
def locked(make_client: ClientFactory) -> TestClient:
    """An API with one read key and one write key."""
    return make_client(api_keys=KEYS)


def test_without_a_key_only_probes_and_the_page_shell_answer(locked: TestClient) -> None:
    for path in (
        "/health",
        "/ready",
        "/openapi.json",
        "/docs",
        "/redoc",
        "/",
        "/library",
        "/library/add",
        "/library/trash",
        "/library/1",
    ):
        assert locked.get(path).status_code == 200, path
    docs_html = locked.get("/docs").text
    asset = docs_html.split('src="', 1)[1].split('"', 1)[0]
    assert locked.get(asset).status_code == 200, asset
    for method, path in (("GET", "/stats"), ("GET", "/images"), ("GET", "/metrics"), ("GET", "/search?ref=1")):
        response = locked.request(method, path)
        assert response.status_code == 401, path
        assert "API key" in response.json()["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert locked.post("/ingest", files=upload("cat.png")).status_code == 401
    assert locked.get("/stats", headers={"X-API-Key": "wrong"}).status_code == 401
    assert locked.get("/images").json()["detail"]  # JSON, not plain text


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"X-API-Key": "reader-key"}},
        {"headers": {"Authorization": "Bearer reader-key"}},
        {"params": {"api_key": "reader-key"}},
    ],
    ids=["x-api-key", "bearer", "query"],
)
def test_a_read_key_is_accepted_from_a_header_a_bearer_token_or_the_query(locked: TestClient, how: dict) -> None:
    assert locked.get("/stats", **how).status_code == 200


def test_a_read_key_reads_and_searches_but_cannot_change_the_index(locked: TestClient) -> None:
    write, read = {"X-API-Key": "writer-key"}, {"X-API-Key": "reader-key"}
    assert locked.post("/ingest", files=upload("cat.png"), headers=read).status_code == 403
    ingested = locked.post("/ingest", files=upload("cat.png", "coffee.jpg"), headers=write)
    assert ingested.status_code == 200
    image_id = ingested.json()["results"][0]["id"]
    assert locked.get("/images", headers=read).json()["total"] == 2
    assert locked.get(f"/images/{image_id}/content", params={"api_key": "reader-key"}).status_code == 200
    search = locked.post("/search", files={"file": ("q.png", upload("cat.png")[0][1][1])}, headers=read)
    assert search.status_code == 200
    refused = locked.delete(f"/images/{image_id}", headers=read)
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert locked.delete(f"/images/{image_id}", headers=write).status_code == 200


def test_the_trash_and_the_decisions_are_read_with_a_read_key_and_changed_only_with_a_write_key(
    locked: TestClient,
) -> None:
    write, read = {"X-API-Key": "writer-key"}, {"X-API-Key": "reader-key"}
    ingested = locked.post("/ingest", files=upload("cat.png", "cat_crop.jpg"), headers=write).json()["results"]
    cat, crop = (r["id"] for r in ingested)
    assert locked.delete(f"/images/{crop}", headers=write).status_code == 200
    for method, path, body in (
        ("POST", f"/trash/{crop}/restore", None),
        ("DELETE", f"/trash/{crop}", None),
        ("DELETE", "/trash", None),
        ("POST", "/duplicates/resolve", {"keep": cat, "remove": [crop]}),
        ("POST", "/duplicates/dismiss", {"ids": [cat, crop]}),
        ("DELETE", "/duplicates/dismissed/1", None),
    ):
        refused = locked.request(method, path, json=body, headers=read)
        assert refused.status_code == 403 and "write" in refused.json()["detail"], path
        assert locked.request(method, path, json=body).status_code == 401, path
    assert locked.get("/trash", headers=read).json()["total"] == 1
    assert locked.get("/duplicates/dismissed", headers=read).json()["total"] == 0
    assert locked.post(f"/trash/{crop}/restore", headers=write).status_code == 200
    assert locked.post("/duplicates/dismiss", json={"ids": [cat, crop]}, headers=write).status_code == 201


def test_without_keys_configured_the_api_stays_open(client: TestClient) -> None:
    assert client.get("/stats").status_code == 200
    assert client.post("/ingest", files=upload("cat.png")).status_code == 200


def test_cors_allows_only_the_configured_origins(make_client: ClientFactory) -> None:
    client = make_client(cors_origins="http://localhost:3000", api_keys=KEYS)
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    allowed = client.options("/ingest", headers={**preflight, "Access-Control-Request-Headers": "x-api-key"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    other = client.options("/ingest", headers={**preflight, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
