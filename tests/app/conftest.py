"""App fixtures: the API over a `tmp_path` data directory, with its lifespan running.

Every API test runs twice: on SQLite + FAISS (the default) and on PostgreSQL + Milvus (milvus-lite).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from index.config import Settings
from tests.conftest import BACKENDS, IMAGES_DIR, backend_overrides

SAMPLE_PHOTOS = ("astronaut.jpg", "camera.jpg", "cat.png", "cat_crop.jpg", "coffee.jpg", "rocket.jpg")


class ClientFactory(Protocol):
    def __call__(self, **overrides: Any) -> TestClient: ...


def upload(*names: str) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart `files` fields for committed sample photos."""
    return [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in names]


def ingest_photos(client: TestClient, *names: str) -> dict[str, int]:
    """Ingest sample photos; file name -> id."""
    response = client.post("/ingest", files=upload(*names))
    assert response.status_code == 200, response.text
    return {r["filename"]: r["id"] for r in response.json()["results"]}


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The configuration of every API test (see tests.conftest.BACKENDS)."""
    return str(request.param)


@pytest.fixture
def make_client(tmp_path: Path, backend: str) -> Iterator[ClientFactory]:
    """`make_client(**settings)`: a fresh app over its own empty data directory (and database), lifespan running."""
    started: list[TestClient] = []
    databases: dict[Path, dict[str, Any]] = {}  # one per data directory, so a restart finds its data

    def make(**overrides: Any) -> TestClient:
        data_dir = Path(overrides.pop("data_dir", tmp_path / f"data{len(started)}"))
        if data_dir not in databases:
            databases[data_dir] = backend_overrides(backend, data_dir)
        client = TestClient(create_app(Settings(**{"data_dir": data_dir, **databases[data_dir], **overrides})))
        client.__enter__()
        started.append(client)
        return client

    yield make
    for client in reversed(started):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    """A fresh, empty API."""
    return make_client()


@pytest.fixture(scope="module")
def photo_client(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[TestClient]:
    """One API per test module, holding SAMPLE_PHOTOS; tests using it must not change what is stored."""
    data_dir = tmp_path_factory.mktemp("photos") / "data"
    settings = Settings(data_dir=data_dir, **backend_overrides(backend, data_dir))
    with TestClient(create_app(settings)) as client:
        ingest_photos(client, *SAMPLE_PHOTOS)
        yield client


@pytest.fixture(scope="module")
def photo_ids(photo_client: TestClient) -> dict[str, int]:
    """File name -> id of the photos `photo_client` holds."""
    listing = photo_client.get("/images", params={"limit": 1000}).json()
    return {item["filename"]: item["id"] for item in listing["items"]}
