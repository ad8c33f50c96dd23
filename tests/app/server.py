"""A real server process (`python -m app.serve`, as the README and the Dockerfile start it, or plain
`uvicorn app.main:app`) on a free port, for end-to-end tests."""

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


# How the README and the Dockerfile start the service; and uvicorn on the app alone, which keeps working.
SERVE = ("-m", "app.serve")
UVICORN = ("-m", "uvicorn", "app.main:app")


def start_server(
    data_dir: Path, log_file: Path, *, command: tuple[str, ...] = SERVE, host: str = "127.0.0.1", **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service as the README and the Dockerfile do; returns at once (not yet ready)."""
    port = free_port()
    environment = {**os.environ, "IMGSIM_DATA_DIR": str(data_dir), **env}
    command = (sys.executable, *command, "--host", host, "--port", str(port))
    with log_file.open("ab") as log:
        proc = subprocess.Popen(list(command), cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
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
def running_server(
    data_dir: Path, log_file: Path, *, command: tuple[str, ...] = SERVE, host: str = "127.0.0.1", **env: str
) -> Iterator[str]:
    """Start the service, wait until /ready, yield its URL (on 127.0.0.1); always stop it."""
    proc, url = start_server(data_dir, log_file, command=command, host=host, **env)
    try:
        wait_ready(proc, url, log_file)
        yield url
    finally:
        stop(proc)
