from __future__ import annotations

import shutil

import pytest

from index.config import Settings
from index.errors import DataDirDamaged
from index.service import ImageIndex
from index.storage.store import ImageStore
from tests.conftest import CountingEmbedder


def test_a_zero_byte_database_beside_kept_images_is_refused_and_nothing_is_reset(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    data_dir = sample_settings.data_dir
    (data_dir / "imgsim.sqlite3").write_bytes(b"")
    before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(DataDirDamaged) as info:
        ImageIndex(sample_settings, embedder)
    message = str(info.value)
    assert "0 bytes" in message and "blobs" in message and "\n" not in message
    after = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # the vector file and every kept image are untouched


def test_a_missing_database_beside_a_vector_file_is_refused(sample_settings: Settings) -> None:
    data_dir = sample_settings.data_dir
    for name in ("imgsim.sqlite3", "imgsim.sqlite3-wal", "imgsim.sqlite3-shm"):
        (data_dir / name).unlink(missing_ok=True)
    shutil.rmtree(data_dir / "blobs")
    with pytest.raises(DataDirDamaged, match="missing"):
        ImageStore(data_dir)
    assert not (data_dir / "imgsim.sqlite3").exists()


def test_a_new_data_directory_still_starts_empty(settings: Settings, embedder: CountingEmbedder) -> None:
    with ImageIndex(settings, embedder) as index:
        assert index.list_images()[0] == 0


def test_temporary_files_left_by_a_crash_are_removed_at_open(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    data_dir = sample_settings.data_dir
    blob_dir = next(p for p in (data_dir / "blobs").iterdir() if p.is_dir())
    leftovers = [
        blob_dir / f".{'a' * 64}.0123456789abcdef.tmp",
        data_dir / ".vectors.faiss.1234.5678.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    with ImageIndex(sample_settings, embedder) as index:
        assert index.list_images()[0] == 10
    assert not any(path.exists() for path in leftovers)
    assert not list(data_dir.rglob("*.tmp"))
