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


@contextmanager
def running_server(data_dir: Path, log_file: Path, **env: str) -> Iterator[str]:
    """Start the service as the README and the Dockerfile do, wait until /ready, yield its URL; always stop it."""
    port = free_port()
    environment = {**os.environ, "IMGSIM_DATA_DIR": str(data_dir), **env}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down gracefully and the lifespan saves the index
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
