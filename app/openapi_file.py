"""Write the API's OpenAPI schema to a file for the documentation site: `python -m app.openapi_file [PATH]`.

The default path is `docs/api/openapi.json`, which the manual links to; a test checks that the file there is
the schema this version of the app serves at `/openapi.json`, so it is rewritten with this command whenever a
route or schema changes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.main import create_app
from index.config import Settings

DOCS_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "api" / "openapi.json"


def openapi_schema() -> dict[str, Any]:
    """The schema the app serves; it does not depend on the settings (keys, limits, data directory)."""
    # The app is only built, never started: nothing is written to the data directory it is given.
    with tempfile.TemporaryDirectory() as data_dir:
        schema: dict[str, Any] = create_app(Settings(data_dir=Path(data_dir))).openapi()
    return schema


def schema_text() -> str:
    """The schema as it is written to the file: indented, keys in the app's order, one newline at the end."""
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DOCS_SCHEMA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
