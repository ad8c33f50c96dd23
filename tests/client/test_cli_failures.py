"""The CLI as a user meets it when something is wrong: one line and a non-zero exit, never a traceback;
Ctrl-C stops it with exit 130 keeping what was stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import IMAGES_DIR, REPO_ROOT, STARTUP_FAILURES, encode_image, hold_lock_in_another_process

pytestmark = pytest.mark.slow


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "similarity_analysis.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


CASES = STARTUP_FAILURES


@pytest.mark.parametrize("case", list(CASES))
def test_a_cli_that_cannot_start_says_why_in_one_line(tmp_path: Path, case: str) -> None:
    env, prepare, expected = CASES[case]
    if case == "no gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data_dir = tmp_path / "data"
    if prepare:
        prepare(data_dir)
    result = run_cli("--images_folder", str(IMAGES_DIR), "--data_dir", str(data_dir), **env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_a_second_writer_is_refused_in_one_line_naming_the_first(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    holder = hold_lock_in_another_process(data_dir)
    try:
        ingest = run_cli("--images_folder", str(IMAGES_DIR), "--data_dir", str(data_dir))
        rebuild = subprocess.run(
            [sys.executable, "-c", "from client.cli import run_rebuild; run_rebuild()", "--data_dir", str(data_dir)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.kill()
        holder.wait()
    for result in (ingest, rebuild):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "in use" in lines[0], result.stderr


def _stored(data_dir: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data_dir / 'imgsim.sqlite3'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_ctrl_c_stops_the_cli_with_exit_130_keeping_what_was_stored(tmp_path: Path) -> None:
    folder, data_dir = tmp_path / "many", tmp_path / "data"
    folder.mkdir()
    for n in range(400):
        (folder / f"img{n:03d}.png").write_bytes(encode_image("PNG", (256, 192), seed=n))
    args = ["--images_folder", str(folder), "--ref_image", "img000.png", "--data_dir", str(data_dir), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "similarity_analysis.py", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while _stored(data_dir) == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "nothing was stored in time"
        time.sleep(0.05)
    # Frozen at once, so that Ctrl-C lands in the middle of the ingest however loaded the machine is: the
    # state is checked while the process cannot move, and the signal is handled when it resumes.
    proc.send_signal(signal.SIGSTOP)
    try:
        assert 0 < _stored(data_dir) < 400, "the ingest finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
    finally:
        proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "terminate called" not in err
    kept = _stored(data_dir)
    assert 0 < kept < 400  # stopped part-way, keeping what was committed
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert _stored(data_dir) == 400
