"""The interactive docs work offline, and the OpenAPI schema reads well."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.openapi_file import DOCS_SCHEMA
from app.routes.compat import UploadImagesResponse
from app.schemas import EmbedResponse, IngestResponse, PredictResponse, SearchResponse

DOC_PAGES = ("/docs", "/redoc")
UPLOAD_ROUTES = {("/embed", "post"), ("/predict", "post"), ("/ingest", "post"), ("/search", "post")}
EXAMPLE_ROUTES = [("/ingest", "post"), ("/search", "get"), ("/search", "post"), ("/predict", "post")]
EXAMPLE_ROUTES += [("/embed", "post"), ("/upload-images/", "post")]
# Models FastAPI itself adds for its validation errors.
FASTAPI_MODELS = {"HTTPValidationError", "ValidationError"}


def referenced_urls(html: str) -> list[str]:
    """Every URL a page loads: src and href attributes, and the spec url Swagger UI or ReDoc is given."""
    urls = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""\burl:\s*["']([^"']+)["']""", html)
    return urls


@pytest.fixture(scope="module")
def openapi(photo_client: TestClient) -> dict[str, Any]:
    schema: dict[str, Any] = photo_client.get("/openapi.json").json()
    return schema


def component(openapi: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


@pytest.mark.parametrize("page", DOC_PAGES)
def test_docs_pages_load_only_assets_served_by_the_app(photo_client: TestClient, page: str) -> None:
    response = photo_client.get(page)
    assert response.status_code == 200
    urls = referenced_urls(response.text)
    assert len(urls) >= 2, urls  # the script and the favicon at least
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = photo_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "cdn" not in response.text.lower()


def test_the_docs_scripts_are_the_real_swagger_ui_and_redoc_bundles(photo_client: TestClient) -> None:
    swagger = photo_client.get("/docs-assets/swagger-ui-bundle.js")
    redoc = photo_client.get("/docs-assets/redoc.standalone.js")
    assert "SwaggerUIBundle" in swagger.text and len(swagger.content) > 500_000
    assert "Redoc" in redoc.text and len(redoc.content) > 500_000
    assert photo_client.get("/docs-assets/swagger-ui.css").headers["content-type"].startswith("text/css")


def test_the_schema_kept_with_the_manual_is_the_one_the_app_serves(openapi: dict[str, Any]) -> None:
    kept = json.loads(DOCS_SCHEMA.read_text(encoding="utf-8"))
    assert kept == openapi, "docs/api/openapi.json is out of date: run `python -m app.openapi_file`"


def test_no_request_body_has_a_generated_name(openapi: dict[str, Any]) -> None:
    names = list(openapi["components"]["schemas"])
    assert not [name for name in names if name.startswith("Body_")]
    for path, method in UPLOAD_ROUTES:
        body = openapi["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert body["$ref"].rsplit("/", 1)[-1] in {"UploadFiles", "QueryImage"}


def test_every_field_of_the_api_models_is_described(openapi: dict[str, Any]) -> None:
    undescribed = [
        f"{name}.{field}"
        for name, schema in openapi["components"]["schemas"].items()
        if name not in FASTAPI_MODELS
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not undescribed


def test_the_main_routes_show_an_example_answer(openapi: dict[str, Any]) -> None:
    for path, method in EXAMPLE_ROUTES:
        ok = openapi["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        examples = component(openapi, ok["$ref"]).get("examples")
        assert examples, f"{method.upper()} {path} has no example"


def test_the_documented_examples_have_the_shape_the_routes_answer(photo_client: TestClient) -> None:
    for model in (EmbedResponse, IngestResponse, PredictResponse, SearchResponse, UploadImagesResponse):
        for example in model.model_json_schema()["examples"]:
            model.model_validate(example)
    live = photo_client.get("/search", params={"ref": "cat.png", "k": 2}).json()
    example = SearchResponse.model_json_schema()["examples"][0]
    assert set(example) == set(live) and set(example["results"][0]) == set(live["results"][0])
