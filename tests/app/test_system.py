from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.lifecycle import open_network_warning
from app.main import create_app
from index.config import Settings
from index.model.embedder import Embedder
from index.startup import InvalidSettings
from tests.app.conftest import ClientFactory


def test_health_answers_ok(photo_client: TestClient) -> None:
    response = photo_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_the_loaded_model(photo_client: TestClient, embedder: Embedder) -> None:
    response = photo_client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model": embedder.version}


def test_ready_is_503_and_other_routes_refuse_before_the_lifespan_has_opened_the_index(tmp_path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data")))  # no `with`: lifespan not run
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    assert client.get("/stats").status_code == 503
    assert not (tmp_path / "data").exists()


def test_stats_describe_the_index_and_the_request_limits(
    photo_client: TestClient, embedder: Embedder, backend: str
) -> None:
    stats = photo_client.get("/stats").json()
    assert stats["count"] == 6
    assert stats["model"] == embedder.name == Settings().model
    assert stats["dim"] == embedder.dim
    assert stats["metric"] == "cosine"
    # Exact at six images, but a Milvus server builds the index it was told to (IMGSIM_MILVUS_INDEX, HNSW).
    assert stats["index_type"] == ("hnsw" if backend == "postgresql-milvus-server" else "flat")
    assert (stats["engine"], stats["precision"]) == (embedder.engine_name, embedder.engine.precision)
    assert stats["limits"]["max_files_per_request"] == Settings().max_files_per_request


def test_openapi_documents_what_search_scores_mean(photo_client: TestClient) -> None:
    schema = photo_client.get("/openapi.json").json()
    description = schema["paths"]["/search"]["get"]["description"]
    assert "similarity" in description and "distance" in description
    assert set(schema["paths"]) >= {
        "/embed",
        "/predict",
        "/ingest",
        "/search",
        "/rank",
        "/images",
        "/images/{image_id}",
        "/images/{image_id}/content",
        "/health",
        "/ready",
        "/stats",
    }


def test_an_unexpected_error_is_a_json_500_not_plain_text(tmp_path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))

    async def broken() -> None:
        raise RuntimeError("something nobody expected")

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert "RuntimeError" in response.json()["detail"]
        assert client.get("/health").status_code == 200


def test_stats_say_whether_the_api_is_open(photo_client: TestClient, make_client: ClientFactory) -> None:
    assert photo_client.get("/stats").json()["access"] == "open"
    locked = make_client(api_keys="k:read")
    assert locked.get("/stats", headers={"X-API-Key": "k"}).json()["access"] == "keys"


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        (["/x/uvicorn", "app.main:app", "--host", "0.0.0.0"], True),
        (["/x/app/serve.py", "--host=::", "--port", "8080"], True),
        (["/x/app/serve.py", "--host", "192.168.1.5"], True),
        (["/x/uvicorn", "app.main:app"], False),  # uvicorn's default is 127.0.0.1
        (["/x/app/serve.py", "--host", "::1"], False),
        (["/x/app/serve.py", "--host", "localhost"], False),
        (["/x/uvicorn", "app.main:app", "--uds", "/run/imgsim.sock"], False),
    ],
)
def test_a_server_listening_beyond_this_machine_without_keys_is_warned(argv: list[str], warned: bool) -> None:
    warning = open_network_warning(Settings(), argv)
    assert (warning is not None) == warned
    assert warning is None or "IMGSIM_API_KEYS=" in warning
    assert open_network_warning(Settings(api_keys=["k:write"]), argv) is None


def test_require_keys_without_keys_refuses_to_create_the_app(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettings, match="IMGSIM_REQUIRE_KEYS"):
        create_app(Settings(data_dir=tmp_path, require_keys=True))
    assert create_app(Settings(data_dir=tmp_path, require_keys=True, api_keys=["k:write"]))
