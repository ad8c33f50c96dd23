from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import ClientFactory, upload
from tests.app.server import running_server

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
        "/library/labels",
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
    [{"X-API-Key": "reader-key"}, {"Authorization": "Bearer reader-key"}, {"Authorization": "bearer  reader-key "}],
    ids=["x-api-key", "bearer", "bearer-spaced"],
)
def test_a_read_key_is_accepted_from_a_header_or_a_bearer_token(locked: TestClient, how: dict) -> None:
    assert locked.get("/stats", headers=how).status_code == 200


def test_a_key_in_the_query_string_is_refused_even_a_valid_one_and_changes_nothing(locked: TestClient) -> None:
    write = {"X-API-Key": "writer-key"}
    image_id = locked.post("/ingest", files=upload("cat.png"), headers=write).json()["results"][0]["id"]
    for response in (
        locked.get("/stats", params={"api_key": "reader-key"}),
        locked.get(f"/images/{image_id}/content", params={"api_key": "reader-key"}),
        locked.post("/ingest", files=upload("coffee.jpg"), params={"api_key": "writer-key"}),
        locked.delete(f"/images/{image_id}", params={"api_key": "writer-key"}),
        locked.delete(f"/images/{image_id}", params={"api_key": "writer-key"}, headers=write),
    ):
        assert response.status_code == 401
        assert "not accepted in the query string" in response.json()["detail"]
        assert "X-API-Key or Authorization: Bearer" in response.json()["detail"]
    assert locked.get("/images", headers=write).json()["total"] == 1


def test_an_open_server_refuses_a_key_in_the_query_string_too(client: TestClient) -> None:
    response = client.get("/stats", params={"api_key": "anything"})
    assert response.status_code == 401 and "query string" in response.json()["detail"]


def test_a_page_trades_its_key_for_an_httponly_session_cookie_of_the_same_scope(locked: TestClient) -> None:
    assert locked.get("/session").json() == {"keys_required": True, "scope": None}
    refused = locked.post("/session", headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401 and "session" not in refused.cookies
    started = locked.post("/session", headers={"X-API-Key": "reader-key"})
    assert started.status_code == 200 and started.json() == {"keys_required": True, "scope": "read"}
    cookie = started.headers["set-cookie"]
    assert "imgsim_session=v1." in cookie and "reader-key" not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=604800" in cookie
    assert "Secure" not in cookie  # plain http here; over https (or a proxy saying so) the cookie is Secure
    # The client keeps the cookie: reads pass without a key, writes need a write key's session.
    assert locked.get("/session").json()["scope"] == "read"
    assert locked.get("/stats").status_code == 200
    denied = locked.post("/ingest", files=upload("cat.png"))
    assert denied.status_code == 403 and "write key" in denied.json()["detail"]
    assert locked.post("/session", headers={"X-API-Key": "writer-key"}).json()["scope"] == "write"
    assert locked.post("/ingest", files=upload("cat.png")).status_code == 200
    ended = locked.delete("/session")
    assert ended.status_code == 200 and "Max-Age=0" in ended.headers["set-cookie"]
    assert locked.get("/stats").status_code == 401


def test_a_forged_expired_or_orphaned_session_is_refused(make_client: ClientFactory) -> None:
    from app.auth import SESSION_MAX_AGE_S, Keys

    keys = Keys({"reader-key": "read", "writer-key": "write"})
    locked = make_client(api_keys=KEYS)
    good = keys.issue("writer-key")
    assert locked.get("/stats", headers={"Cookie": f"imgsim_session={good}"}).status_code == 200
    version, key_id, expires, signature = good.split(".")
    for token in (
        f"{version}.{key_id}.{int(expires) + 1000}.{signature}",  # a longer life, same signature
        f"{version}.{key_id}.{expires}.{'0' * 64}",
        keys.issue("writer-key", now=0),  # expired long ago
        Keys({"old-key": "write"}).issue("old-key"),  # made from a key no longer configured
        "garbage",
    ):
        assert locked.get("/stats", headers={"Cookie": f"imgsim_session={token}"}).status_code == 401, token
    assert int(expires) - SESSION_MAX_AGE_S <= time.time()


def test_docs_declare_the_key_schemes_so_authorize_sends_them(locked: TestClient) -> None:
    schema = locked.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/images"]["get"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert schema["paths"]["/ingest"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []


def test_a_read_key_reads_and_searches_but_cannot_change_the_index(locked: TestClient) -> None:
    write, read = {"X-API-Key": "writer-key"}, {"X-API-Key": "reader-key"}
    assert locked.post("/ingest", files=upload("cat.png"), headers=read).status_code == 403
    ingested = locked.post("/ingest", files=upload("cat.png", "coffee.jpg"), headers=write)
    assert ingested.status_code == 200
    image_id = ingested.json()["results"][0]["id"]
    assert locked.get("/images", headers=read).json()["total"] == 2
    assert locked.get(f"/images/{image_id}/content", headers=read).status_code == 200
    search = locked.post("/search", files={"file": ("q.png", upload("cat.png")[0][1][1])}, headers=read)
    assert search.status_code == 200
    among = locked.post("/duplicates/among", json={"ids": [image_id]}, headers=read)  # groups: a read, too
    assert among.status_code == 200 and among.json()["total"] == 0
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


@pytest.mark.slow
def test_a_real_server_never_writes_a_key_to_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with running_server(tmp_path / "data", log, IMGSIM_API_KEYS="s3cret-writer:write") as url:
        for response in (
            httpx.get(f"{url}/stats?api_key=s3cret-writer"),
            httpx.post(f"{url}/ingest?x=1&api_key=s3cret-writer", files=upload("cat.png")),
            httpx.delete(f"{url}/images/1?api_key=s3cret-writer"),
        ):
            assert response.status_code == 401
        assert httpx.get(f"{url}/stats", headers={"X-API-Key": "s3cret-writer"}).status_code == 200
        session = httpx.post(f"{url}/session", headers={"Authorization": "Bearer s3cret-writer"})
        assert httpx.get(f"{url}/stats", cookies=session.cookies).status_code == 200
    text = log.read_text()
    assert "s3cret" not in text
    assert "GET /stats?api_key=[redacted]" in text and "POST /ingest?x=1&api_key=[redacted]" in text
