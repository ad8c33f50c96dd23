from __future__ import annotations

import os
from pathlib import Path

import pytest

from index.config import Settings
from index.errors import DataDirLocked
from index.rebuild import rebuild_index
from index.service import ImageIndex
from index.storage.lock import SERVER_FILE, DataDirLock, serving_url
from tests.conftest import CountingEmbedder, hold_lock_in_another_process


def test_a_second_writer_is_refused_with_a_message_naming_the_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path / "data"):
        with pytest.raises(DataDirLocked) as info:
            DataDirLock(tmp_path / "data")
        assert f"pid {os.getpid()}" in str(info.value)
        assert "\n" not in str(info.value)
    with DataDirLock(tmp_path / "data"):  # released: the next writer gets it
        pass


def test_an_index_holds_the_lock_while_open_and_rebuild_is_refused_meanwhile(
    settings: Settings, embedder: CountingEmbedder
) -> None:
    with ImageIndex(settings, embedder):
        with pytest.raises(DataDirLocked):
            ImageIndex(settings, embedder)
        with pytest.raises(DataDirLocked):
            rebuild_index(settings)
    with ImageIndex(settings, embedder):
        pass


def test_a_lock_held_by_another_process_names_its_pid_and_url_and_dies_with_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = hold_lock_in_another_process(data_dir, "http://127.0.0.1:9999")
    try:
        with pytest.raises(DataDirLocked) as info:
            DataDirLock(data_dir)
        message = str(info.value)
        assert f"pid {proc.pid}" in message and "http://127.0.0.1:9999" in message
        assert serving_url(data_dir) == "http://127.0.0.1:9999"
    finally:
        proc.kill()  # like kill -9: no clean-up runs, the kernel drops the lock
        proc.wait()
    assert (data_dir / SERVER_FILE).exists()  # left behind by the killed process...
    assert serving_url(data_dir) is None  # ...but nobody holds the lock, so it is ignored
    with DataDirLock(data_dir):
        pass
