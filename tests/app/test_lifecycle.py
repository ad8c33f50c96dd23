"""The real process: /health at once, /ready once loaded, periodic and SIGTERM saves, the CLI using the
running server, and start-up failures as one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from index.model.embedder import Embedder
from index.rebuild import INDEX_FILE
from index.vectors.faiss_index import VectorIndex
from tests.app.server import running_server, start_server, stop, wait_ready
from tests.conftest import IMAGES_DIR, REPO_ROOT, STARTUP_FAILURES, encode_image, hold_lock_in_another_process

pytestmark = pytest.mark.slow


def saved_ids(data_dir: Path) -> list[int]:
    return VectorIndex.load(data_dir / INDEX_FILE).ids().tolist()


def test_health_answers_while_loading_saves_periodically_and_sigterm_drains_and_saves(
    tmp_path: Path, images_copy: Path
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    proc, url = start_server(data_dir, log, IMGSIM_SAVE_INTERVAL_S="1")
    try:
        while True:  # the first answer comes while the model is still loading
            try:
                health = httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
        ready, stats = httpx.get(f"{url}/ready"), httpx.get(f"{url}/stats")
        assert health.status_code == 200
        assert (ready.status_code, ready.json()["status"]) == (503, "starting")
        assert stats.status_code == 503 and stats.headers["retry-after"].isdigit()
        wait_ready(proc, url, log)

        files = [("files", (p.name, p.read_bytes())) for p in sorted(IMAGES_DIR.glob("*.jpg"))]
        ids = [r["id"] for r in httpx.post(f"{url}/ingest", files=files, timeout=120).json()["results"]]
        deadline = time.monotonic() + 30
        while saved_ids(data_dir) != sorted(ids):  # saved by the periodic save, not at exit
            assert time.monotonic() < deadline, "the vector index was not saved periodically"
            time.sleep(0.2)

        # The CLI on the served data directory talks to the server instead of writing beside it.
        command = ["similarity_analysis.py", "--images_folder", str(images_copy), "--data_dir", str(data_dir)]
        cli = subprocess.run(
            [sys.executable, *command],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert cli.returncode == 0, cli.stderr
        assert f"served by the API at {url}" in cli.stderr
        assert "cat_mirror.png" in cli.stdout
        count = httpx.get(f"{url}/stats").json()["count"]
        assert count == len(list(images_copy.glob("*.*")))

        # SIGTERM while an ingest is in flight: the request completes, then the index is saved.
        batch = [("files", (f"g{n}.png", encode_image("PNG", (320, 240), seed=1000 + n))) for n in range(48)]
        answer: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: answer.update(r=httpx.post(f"{url}/ingest", files=batch, timeout=120)))
        sender.start()
        time.sleep(0.5)
        stop(proc)
        sender.join()
        assert answer["r"].status_code == 200
        new_ids = [r["id"] for r in answer["r"].json()["results"]]
        assert len(saved_ids(data_dir)) == count + len(new_ids)
        assert set(new_ids) <= set(saved_ids(data_dir))
        assert not (data_dir / "server.json").exists()
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _failure_output(tmp_path: Path, **env: str) -> tuple[int, str]:
    proc, _url = start_server(tmp_path / "data", tmp_path / "fail.log", **env)
    try:
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, (tmp_path / "fail.log").read_text()


CASES = {
    **STARTUP_FAILURES,
    "api keys": ({"IMGSIM_API_KEYS": "secret-without-scope"}, None, "IMGSIM_API_KEYS"),
    "keys required": ({"IMGSIM_REQUIRE_KEYS": "true"}, None, "IMGSIM_REQUIRE_KEYS is set but IMGSIM_API_KEYS is empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_server_that_cannot_start_says_why_in_one_line_and_exits_1(tmp_path: Path, case: str) -> None:
    env, prepare, expected = CASES[case]
    if case == "no gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if prepare:
        prepare(tmp_path / "data")
    code, output = _failure_output(tmp_path, **env)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1, output
    assert len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output and "secret-without-scope" not in output


def test_a_second_server_on_a_served_data_directory_names_the_first_and_exits(tmp_path: Path) -> None:
    holder = hold_lock_in_another_process(tmp_path / "data", "http://127.0.0.1:8123")
    try:
        code, output = _failure_output(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(errors) == 1 and f"pid {holder.pid}" in errors[0] and "http://127.0.0.1:8123" in errors[0]
    assert "Traceback" not in output


def test_the_server_says_in_one_line_where_it_serves_what_and_with_which_model(
    tmp_path: Path, sample_index_dir: Path, embedder: Embedder
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    shutil.copytree(sample_index_dir, data_dir)
    proc, url = start_server(data_dir, log)
    try:
        wait_ready(proc, url, log)
    finally:
        stop(proc)
    said = [line for line in log.read_text().splitlines() if "ready at" in line]
    assert said == [
        f"INFO:     ready at {url}: data dir {data_dir}, model efficientnet_lite0, definition gem3+logits1.3, "
        f"engine {embedder.engine_name}, precision {embedder.engine.precision}, 10 images"
    ]


def test_serving_the_network_without_keys_warns_at_start_and_in_stats_and_still_serves(tmp_path: Path) -> None:
    log = tmp_path / "open.log"
    with running_server(tmp_path / "data", log, host="0.0.0.0") as url:
        stats = httpx.get(f"{url}/stats").json()
        # The original client's flow: no key, straight to the compatibility route.
        files = [("files", ("cat.png", (IMAGES_DIR / "cat.png").read_bytes()))]
        compat = httpx.post(f"{url}/upload-images/", files=files, timeout=120)
    text = log.read_text()
    assert "WARNING: imgsim listens on 0.0.0.0:" in text and "with no API keys" in text
    assert 'IMGSIM_API_KEYS="$(openssl rand -hex 16):write"' in text
    assert stats["access"] == "open"
    assert compat.status_code == 200 and compat.json()["message"] == "You uploaded 1 image(s)"


def test_with_keys_or_on_the_loopback_there_is_no_warning(tmp_path: Path) -> None:
    keyed, local = tmp_path / "keyed.log", tmp_path / "local.log"
    with running_server(tmp_path / "a", keyed, host="0.0.0.0", IMGSIM_API_KEYS="k:read") as url:
        assert httpx.get(f"{url}/stats", headers={"X-API-Key": "k"}).json()["access"] == "keys"
    with running_server(tmp_path / "b", local):
        pass
    assert "WARNING" not in keyed.read_text() and "WARNING" not in local.read_text()
