from __future__ import annotations

from fastapi.testclient import TestClient

from tests.app.conftest import upload
from tests.conftest import IMAGES_DIR


def _file(name: str) -> tuple[str, bytes]:
    return (name, (IMAGES_DIR / name).read_bytes())


def test_unknown_query_parameters_are_422_naming_them(photo_client: TestClient) -> None:
    for path, params in (
        ("/images", {"limt": "5"}),
        ("/search", {"ref": "cat.png", "top_k": "3"}),
        ("/stats", {"verbose": "1"}),
    ):
        response = photo_client.get(path, params=params)
        assert response.status_code == 422, path
        (error,) = response.json()["detail"]
        assert error["loc"][0] == "query" and error["loc"][1] in params


def test_unknown_form_fields_are_422(photo_client: TestClient) -> None:
    response = photo_client.post("/predict", files=upload("cat.png"), data={"topk": "2"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "topk"]


def test_a_second_file_part_where_one_is_taken_is_422(photo_client: TestClient) -> None:
    response = photo_client.post("/search", files=[("file", _file("cat.png")), ("file", _file("coffee.jpg"))])
    assert response.status_code == 422
    assert "exactly one" in response.json()["detail"][0]["msg"]


def test_search_by_upload_honours_k_metric_and_label_sent_as_form_fields(photo_client: TestClient) -> None:
    response = photo_client.post(
        "/search", files={"file": _file("cat_grey.png")}, data={"k": "2", "metric": "euclidean"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metric"] == "euclidean" and len(body["results"]) == 2
    # Distances, closest first, after any stored copies of the query (which always come first).
    plain = [r["score"] for r in body["results"] if not r["duplicate"]]
    assert plain == sorted(plain)
    flags = [r["duplicate"] for r in body["results"]]
    assert flags == sorted(flags, reverse=True)
    query = {"k": 2, "metric": "euclidean"}
    as_query = photo_client.post("/search", files={"file": _file("cat_grey.png")}, params=query)
    assert as_query.json() == body
    conflicting = photo_client.post("/search", files={"file": _file("cat_grey.png")}, params={"k": 3}, data={"k": "2"})
    assert conflicting.status_code == 422
