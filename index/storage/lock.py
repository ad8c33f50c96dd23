"""One writer per data directory: an advisory lock (`flock`) on `data_dir/.lock`, held while a process writes.

The lock file names its holder (pid, command line, and for an API server its URL), so a second writer can
say exactly who is in the way. The operating system drops the lock when the holder exits, even on `kill -9`:
a stale lock cannot outlive its process. A server also records its address in `data_dir/server.json`, so a
CLI run on the same data directory can use the server instead of writing beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from index.errors import DataDirLocked, InvalidArgument
from index.storage.permissions import make_private_dir, write_private

LOCK_FILE = ".lock"
SERVER_FILE = "server.json"


def _command() -> str:
    """The command line, shortened: 'uvicorn app.main:app --port 8080', 'similarity_analysis.py ...'."""
    if not sys.argv or not sys.argv[0]:
        return Path(sys.executable).name
    program = Path(sys.argv[0])
    name = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
    return " ".join([name, *sys.argv[1:]])[:300]


def describe_holder(holder: dict[str, Any]) -> str:
    """'the API server at URL (pid N: command)' or 'pid N (command)'."""
    pid, command = holder.get("pid", "?"), holder.get("command", "?")
    if holder.get("url"):
        return f"the imgsim API server at {holder['url']} (pid {pid}: {command})"
    return f"pid {pid} ({command})"


class DataDirLock:
    """An exclusive, non-blocking lock on a data directory; `release()` (or process exit) frees it."""

    def __init__(self, data_dir: Path, role: str = "writer", url: str | None = None) -> None:
        """Take the lock.

        Raises:
            DataDirLocked: another process holds it (the message names the holder).
            InvalidArgument: `data_dir` cannot be a directory.
        """
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self.holder: dict[str, Any] = {
            "pid": os.getpid(),
            "command": _command(),
            "role": role,
            "url": url,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            make_private_dir(data_dir)
            # Only the owner may open it: anyone who can open a file can flock it, and so stop this service.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)  # made readable by an earlier version
        except OSError as exc:
            raise InvalidArgument(f"cannot use {data_dir} as the data directory: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(data_dir)
            raise DataDirLocked(
                f"{data_dir} is in use by {describe_holder(holder)}; "
                + (
                    f"use that server (e.g. --api_url {holder['url']}) or stop it first"
                    if holder.get("url")
                    else "wait for it to finish or stop it first"
                ),
                holder,
            ) from None
        self._fd: int | None = fd
        self._write(self.holder)
        if url:
            self.record_url(url)

    def _write(self, holder: dict[str, Any]) -> None:
        # Best effort: the lock itself is the flock; the text only names the holder (a full disk may stop it).
        assert self._fd is not None
        with contextlib.suppress(OSError):
            data = json.dumps(holder).encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def record_url(self, url: str) -> None:
        """Record a server's address beside the lock (in the lock file and `server.json`)."""
        self.holder["url"] = url
        self._write(self.holder)
        tmp = self.data_dir / f".{SERVER_FILE}.{os.getpid()}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            write_private(tmp, json.dumps({"url": url, "pid": os.getpid()}).encode())
            os.replace(tmp, self.data_dir / SERVER_FILE)
        except OSError:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is None:
            return
        if self.holder.get("url"):
            (self.data_dir / SERVER_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(data_dir: Path) -> dict[str, Any]:
    """What the lock file says about its holder ({} when unknown)."""
    try:
        holder = json.loads((data_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def serving_url(data_dir: Path) -> str | None:
    """The URL of the API server that holds the lock on `data_dir`, if one does (a stale file is ignored)."""
    path = data_dir / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            url = read_holder(data_dir).get("url")
            return str(url) if url else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: any server.json is left from a crash
    finally:
        os.close(fd)
