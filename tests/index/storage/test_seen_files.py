"""Files already read: an unchanged file is not read again, and any change to a file (or a change too recent
for its times to vouch for it) means it is read and hashed again."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import index.ingest
from index.config import Settings
from index.pipeline import ImageSource, ReadImage
from index.service import ImageIndex
from index.storage import seen_files
from index.storage.seen_files import FileStat
from tests.conftest import BACKENDS, CountingEmbedder, ImageFactory

SECOND = 1_000_000_000


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Remembering files is the metadata store's: every test here runs on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def folder(tmp_path: Path, make_image: ImageFactory) -> Path:
    """Three BMPs of one size (a BMP's size depends only on its dimensions)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        (folder / f"p{seed}.bmp").write_bytes(make_image("BMP", (40, 30), seed=seed))
    return folder


@pytest.fixture
def files_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the ingest pipeline reads from disk (the real reader, watched)."""
    paths: list[str] = []
    real: Callable[[Sequence[ImageSource], int], list[ReadImage]] = index.ingest.read_sources

    def watched(sources: Sequence[ImageSource], workers: int) -> list[ReadImage]:
        paths.extend(s.path for s in sources if s.data is None)
        return real(sources, workers)

    monkeypatch.setattr(index.ingest, "read_sources", watched)
    return paths


@pytest.fixture
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files made by a test are at most seconds old: let their stat vouch for them at once."""
    monkeypatch.setattr(seen_files, "SETTLE_NS", 0)


def sources(folder: Path) -> list[ImageSource]:
    return ImageSource.from_paths(sorted(folder.iterdir()))


@pytest.mark.usefixtures("settled_at_once")
def test_a_second_ingest_of_an_unchanged_folder_reads_no_file(
    settings: Settings, embedder: CountingEmbedder, folder: Path, files_read: list[str]
) -> None:
    with ImageIndex(settings, embedder) as index:
        first = index.ingest(sources(folder))
        assert [r.status for r in first] == ["added"] * 3
        files_read.clear()
        again = index.ingest(sources(folder))
    assert files_read == []
    assert [r.status for r in again] == ["exists"] * 3
    assert [(r.id, r.sha256) for r in again] == [(r.id, r.sha256) for r in first]
    for stored, embedded in zip(again, first, strict=True):  # stored scores are rounded to 6 decimals
        assert [p.class_index for p in stored.predictions] == [p.class_index for p in embedded.predictions]
        assert [p.score for p in stored.predictions] == pytest.approx([p.score for p in embedded.predictions], abs=1e-6)


@pytest.mark.usefixtures("settled_at_once")
def test_a_file_rewritten_with_its_old_size_and_time_is_read_and_embedded_again(
    settings: Settings, embedder: CountingEmbedder, folder: Path, make_image: ImageFactory, files_read: list[str]
) -> None:
    target = folder / "p0.bmp"
    with ImageIndex(settings, embedder) as index:
        (old,) = index.ingest(ImageSource.from_paths([target]))
        assert index.store.seen_files([str(target)])  # remembered, so only the stat can tell the change
        before = target.stat()
        target.write_bytes(make_image("BMP", (40, 30), seed=99))
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # the change time cannot be set back
        assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
        files_read.clear()
        (new,) = index.ingest(ImageSource.from_paths([target]))
    assert files_read == [str(target)]
    assert new.status == "added" and new.sha256 != old.sha256


def test_a_file_changed_moments_before_it_was_read_is_not_vouched_for_by_its_stat(
    settings: Settings, embedder: CountingEmbedder, folder: Path, files_read: list[str]
) -> None:
    with ImageIndex(settings, embedder) as index:
        for path in folder.iterdir():  # changed just now, however long opening the index took
            os.utime(path)
        index.ingest(sources(folder))
        assert index.store.seen_files([s.path for s in sources(folder)]) == {}
        files_read.clear()
        again = index.ingest(sources(folder))
    assert len(files_read) == 3
    assert [r.status for r in again] == ["exists"] * 3


@pytest.mark.usefixtures("settled_at_once")
def test_an_unchanged_file_whose_image_was_deleted_for_good_is_read_and_stored_again(
    settings: Settings, embedder: CountingEmbedder, folder: Path, files_read: list[str]
) -> None:
    with ImageIndex(settings, embedder) as index:
        first = index.ingest(sources(folder))
        assert first[1].id is not None
        index.delete(first[1].id)
        index.purge(first[1].id)
        files_read.clear()
        again = index.ingest(sources(folder))
    assert files_read == [first[1].path]
    assert [r.status for r in again] == ["exists", "added", "exists"]
    assert again[1].sha256 == first[1].sha256 and again[1].id != first[1].id


@pytest.mark.usefixtures("settled_at_once")
def test_an_unchanged_file_whose_image_is_in_the_trash_restores_it_without_being_read(
    settings: Settings, embedder: CountingEmbedder, folder: Path, files_read: list[str]
) -> None:
    with ImageIndex(settings, embedder) as index:
        first = index.ingest(sources(folder))
        assert first[1].id is not None
        index.delete(first[1].id)
        files_read.clear()
        again = index.ingest(sources(folder))
        assert files_read == []
        assert [r.status for r in again] == ["exists", "restored", "exists"]
        assert again[1].id == first[1].id
        assert index.get(first[1].id).trashed_at is None and first[1].id in index.vectors.ids()


def test_a_stat_vouches_for_a_file_only_once_it_has_settled() -> None:
    stat = FileStat(size=10, mtime_ns=100 * SECOND, ctime_ns=101 * SECOND, inode=7)
    assert not stat.settled(now_ns=102 * SECOND)  # changed a second ago (by its change time)
    assert stat.settled(now_ns=104 * SECOND)


def test_a_file_that_cannot_be_stated_has_no_stat(tmp_path: Path) -> None:
    assert FileStat.of(str(tmp_path / "missing.jpg")) is None
