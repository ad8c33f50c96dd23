"""The Mercury notebook runs headless (`jupyter nbconvert --execute`) against a live server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.app.server import free_port
from tests.apps.conftest import APPS_DIR, CAT_VARIANTS, NOTEBOOK, QUERY, STORED, mercury_tool

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 300


def execute_notebook(out_dir: Path, **env: str) -> dict[str, list[dict[str, Any]]]:
    """Run every cell in a fresh kernel of the app's environment; cell id -> its outputs."""
    jupyter = mercury_tool("jupyter")
    out = out_dir / "executed.ipynb"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMGSIM_")} | env
    command = [str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK), "--output", str(out)]
    command += [f"--ExecutePreprocessor.timeout={RUN_TIMEOUT_S}", "--ExecutePreprocessor.kernel_name=python3"]
    # The kernel starts in the notebook's folder, as under Mercury, so `import imgsim_app` finds the module.
    run = subprocess.run(command, cwd=APPS_DIR, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-3000:]
    notebook = json.loads(out.read_text())
    return {cell["id"]: cell.get("outputs", []) for cell in notebook["cells"]}


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)


def test_the_notebook_shows_ranked_results_and_the_library_for_a_reference(api_url: str, tmp_path: Path) -> None:
    outputs = execute_notebook(tmp_path, IMGSIM_API_URL=api_url, IMGSIM_REF_IMAGE=str(QUERY))

    assert not [o for cell in outputs.values() for o in cell if o["output_type"] == "error"]
    results = html_of(outputs["results"])
    ranked = [results.split(f'data-rank="{r}"')[1].split('data-filename="')[1].split('"')[0] for r in (1, 2, 3)]
    assert set(ranked) == CAT_VARIANTS
    assert f'data-rank="{len(STORED)}"' in results  # k = 8 by default: every stored image, ranked
    assert "most similar to cat_recompressed.jpg (cosine)" in results
    library = html_of(outputs["library"])
    assert f"Library: {len(STORED)} images, page 1 of 1" in library
    assert library.count('class="imgsim-card"') == len(STORED)


def test_an_unreachable_api_shows_messages_not_tracebacks(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    outputs = execute_notebook(tmp_path, IMGSIM_API_URL=url, IMGSIM_REF_IMAGE=str(QUERY))
    assert not [o for cell in outputs.values() for o in cell if o["output_type"] == "error"]
    for cell in ("results", "library"):
        assert 'role="alert"' in html_of(outputs[cell]) and "cannot reach the imgsim API" in html_of(outputs[cell])
