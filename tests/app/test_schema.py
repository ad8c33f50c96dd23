"""Property-based run of every operation against the app's own OpenAPI schema (in-process, ASGI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from index.config import Settings
from index.model.embedder import Embedder
from index.service import ImageIndex
from tests.conftest import IMAGES_DIR

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[schemathesis.BaseSchema]:
    """The app over a data directory holding the sample photos, so ids and names can hit stored images."""
    config = Settings(data_dir=tmp_path_factory.mktemp("schema") / "data", max_files_per_request=4)
    with ImageIndex(config, embedder) as index:
        index.ingest_folder(IMAGES_DIR)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(config))
    shutdown_lifespans()  # schemathesis started the lifespan; close the index before tmp_path goes


def test_no_request_gets_a_5xx_or_a_response_outside_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    # One hypothesis run per operation (the pytest plugin's lazy fixtures do not support this pytest version).
    failures: dict[str, BaseException] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Exception as exc:
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}: {exc}" for label, exc in failures.items())
