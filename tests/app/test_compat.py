"""The compatibility route: the original project's client posts a folder with `requests` and keeps working."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from app.routes.compat import response_keys
from tests.app.server import running_server
from tests.conftest import IMAGES_DIR

pytestmark = pytest.mark.slow

FOLDER = ["cat.png", "coffee.jpg", "rocket.jpg"]
MAX_UPLOAD_BYTES = 3_000_000


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("compat-server")
    env = {"IMGSIM_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)}
    with running_server(tmp / "data", tmp / "server.log", **env) as url:
        yield url


def post_like_the_original_client(url: str, paths: list[Path]) -> requests.Response:
    """Exactly what that client does: one ('files', open(path, 'rb')) part per file, to /upload-images/."""
    with ExitStack() as stack:
        files = [("files", stack.enter_context(path.open("rb"))) for path in paths]
        return requests.post(f"{url}/upload-images/", files=files, timeout=120)


def assert_error_shape(response: requests.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "detail"}
    assert isinstance(body["message"], str) and body["message"]
    assert body["message"] == body["detail"]
    return body


def test_a_folder_posted_like_the_original_client_gets_predictions_and_embeddings_by_file_name(
    server_url: str,
) -> None:
    response = post_like_the_original_client(server_url, [IMAGES_DIR / name for name in FOLDER])

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "predictions", "embeddings"}
    assert body["message"] == "You uploaded 3 image(s)"
    assert list(body["predictions"]) == FOLDER and list(body["embeddings"]) == FOLDER
    assert body["predictions"]["coffee.jpg"] == "espresso"
    assert body["predictions"]["cat.png"] in {"Egyptian cat", "tiger cat", "tabby, tabby cat"}

    dim = requests.get(f"{server_url}/stats", timeout=30).json()["dim"]
    for vector in body["embeddings"].values():
        assert len(vector) == dim and all(isinstance(x, float) for x in vector)
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-3)


def test_the_answers_agree_with_embed_and_predict_and_nothing_is_stored(server_url: str) -> None:
    paths = [IMAGES_DIR / "cat_crop.jpg", IMAGES_DIR / "astronaut.jpg"]
    compat = post_like_the_original_client(server_url, paths).json()
    parts = [("files", (p.name, p.read_bytes())) for p in paths]
    embedded = requests.post(f"{server_url}/embed", files=parts, timeout=120).json()["results"]
    predicted = requests.post(f"{server_url}/predict", files=parts, timeout=120).json()["results"]

    for path, emb, pred in zip(paths, embedded, predicted, strict=True):
        assert compat["predictions"][path.name] == pred["predictions"][0]["label"]
        pairs = zip(compat["embeddings"][path.name], emb["embedding"], strict=True)
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in pairs)
    assert requests.get(f"{server_url}/stats", timeout=30).json()["count"] == 0


def test_a_file_name_sent_twice_keeps_both_results_under_numbered_keys(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg"
    first.write_bytes((IMAGES_DIR / "coffee.jpg").read_bytes())
    second.write_bytes((IMAGES_DIR / "rocket.jpg").read_bytes())

    body = post_like_the_original_client(server_url, [first, second]).json()

    assert body["message"] == "You uploaded 2 image(s)"
    assert list(body["predictions"]) == ["photo.jpg", "photo.jpg (2)"]
    assert body["predictions"]["photo.jpg"] == "espresso"
    assert body["predictions"]["photo.jpg (2)"] != "espresso"
    assert body["embeddings"]["photo.jpg"] != body["embeddings"]["photo.jpg (2)"]


def test_a_file_that_is_not_an_image_gets_a_422_with_message_and_detail(server_url: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    body = assert_error_shape(post_like_the_original_client(server_url, [IMAGES_DIR / "cat.png", notes]))
    assert "notes.jpg" in body["message"]


def test_a_request_without_files_gets_a_422_naming_the_field(server_url: str) -> None:
    response = requests.post(f"{server_url}/upload-images/", timeout=30)
    assert response.status_code == 422
    assert assert_error_shape(response)["message"] == "files: Field required"
    # A misspelt field is named too, rather than silently ignored.
    misspelt = requests.post(f"{server_url}/upload-images/", data={"file": "x"}, timeout=30)
    assert misspelt.status_code == 422
    assert assert_error_shape(misspelt)["message"].startswith("file: unknown form field")


def test_an_upload_over_the_size_limit_gets_a_413_with_message_and_detail(server_url: str, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (MAX_UPLOAD_BYTES + 1))
    response = post_like_the_original_client(server_url, [big])
    assert response.status_code == 413
    assert str(MAX_UPLOAD_BYTES) in assert_error_shape(response)["message"]


def test_other_routes_keep_their_own_error_shape(server_url: str) -> None:
    response = requests.post(f"{server_url}/embed", files=[("files", ("x.jpg", b"nope"))], timeout=30)
    assert response.status_code == 422
    assert set(response.json()) == {"detail"}


def test_response_keys_number_repeated_names_without_clashing_with_real_ones() -> None:
    assert response_keys(["a.jpg", "b.jpg"]) == ["a.jpg", "b.jpg"]
    assert response_keys(["a.jpg", "a.jpg", "a.jpg"]) == ["a.jpg", "a.jpg (2)", "a.jpg (3)"]
    assert response_keys(["a.jpg", "a.jpg (2)", "a.jpg"]) == ["a.jpg", "a.jpg (2)", "a.jpg (3)"]
