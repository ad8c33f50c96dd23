"""The real Milvus server of a test session (the `postgresql-milvus-server` configuration).

One standalone server from the `milvus` package (deploy/local_milvus.py), started on first use in a
loopback-only network namespace and stopped when the session ends; every test gets collections of its own on it.
Without root or without the package, the configuration is skipped, saying why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from deploy.local_milvus import LocalMilvus

collections: list[str] = []  # every collection name handed out, in order
_server: list[LocalMilvus] = []
_failed: list[str] = []


def session_server() -> LocalMilvus:
    """The session's server, started on first call (about ten seconds); skips the test when it cannot start."""
    if _server:
        return _server[0]
    if _failed:
        pytest.skip(_failed[0])
    reason = _cannot_start()
    if reason:
        _failed.append(reason)
        pytest.skip(reason)
    data = Path(tempfile.mkdtemp(prefix="imgsim-test-milvus-"))
    server = LocalMilvus(data)
    try:
        server.start()
    except RuntimeError as exc:
        server.close()
        shutil.rmtree(data, ignore_errors=True)
        _failed.append(f"the Milvus server did not start: {exc}")
        raise
    _server.append(server)

    def stop() -> None:
        server.close()
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    return server


def _cannot_start() -> str:
    import importlib.util

    if importlib.util.find_spec("milvus") is None:
        return "no Milvus server: pip install -r requirements-milvus-server.txt (or set IMGSIM_TEST_MILVUS_URI)"
    if os.geteuid() != 0:
        return "no Milvus server: starting one in its own network namespace needs root (or set IMGSIM_TEST_MILVUS_URI)"
    return ""


def new_collection_name() -> str:
    name = f"imgsim_test_{uuid.uuid4().hex[:12]}"
    collections.append(name)
    return name


def drop_collections(uri: str | None, since: int) -> None:
    """Drop the collections handed out since the `since`-th (those that were made) on `uri` or the session's."""
    names = collections[since:]
    if not names or (uri is None and not _server):
        return
    from pymilvus import MilvusClient

    client = MilvusClient(uri or _server[0].uri, timeout=30)
    try:
        existing = set(client.list_collections())
        for name in names:
            if name in existing:
                client.drop_collection(name)
    finally:
        client.close()
