"""A real `uvicorn app.main:app` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, log_file: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `uvicorn app.main:app` as the README and the Dockerfile do; returns at once (not yet ready)."""
    port = free_port()
    environment = {**os.environ, "IMGSIM_DATA_DIR": str(data_dir), **env}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_file: Path, path: str = "/ready") -> None:
    """Wait until `path` answers 200; raises with the log's tail when the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{log_file.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM: uvicorn drains in-flight requests and the lifespan saves the index. Returns the exit code."""
    proc.terminate()
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@contextmanager
def running_server(data_dir: Path, log_file: Path, **env: str) -> Iterator[str]:
    """Start the service, wait until /ready, yield its URL; always stop it."""
    proc, url = start_server(data_dir, log_file, **env)
    try:
        wait_ready(proc, url, log_file)
        yield url
    finally:
        stop(proc)
