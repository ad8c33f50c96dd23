"""Pruning: the images whose recorded files are all gone from disk go to the trash, on SQLite + FAISS and on
PostgreSQL + Milvus; an image uploaded without a path, or with one of its files still there, stays."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.config import Settings
from index.pipeline import ImageSource
from index.service import ImageIndex
from tests.conftest import BACKENDS, IMAGES_DIR, CountingEmbedder


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Pruning reads the metadata store's paths and moves images out of the vector stores: run on both."""
    return str(request.param)


@pytest.fixture
def index(settings: Settings, embedder: CountingEmbedder, images_copy: Path) -> Iterator[ImageIndex]:
    """An index holding the copied sample photos by path, and an uploaded image known by no path."""
    with ImageIndex(settings, embedder) as index:
        index.ingest_folder(images_copy)
        index.ingest([ImageSource(name="upload.jpg", data=(IMAGES_DIR / "rocket.jpg").read_bytes())])
    opened = ImageIndex(settings, embedder)
    yield opened
    opened.close()


def live_names(index: ImageIndex) -> set[str]:
    return {i.filename for i in index.list_images(limit=1000)[1]}


def test_an_image_whose_files_are_all_gone_goes_to_the_trash_and_nothing_else(
    index: ImageIndex, images_copy: Path
) -> None:
    (images_copy / "coffee.jpg").unlink()
    (images_copy / "camera.jpg").unlink()
    before = live_names(index)
    ids = sorted(index.resolve_ref(n).id for n in ("coffee.jpg", "camera.jpg"))

    pruned = index.prune()

    assert [i.id for i in pruned] == ids
    assert pruned[0].paths and all(not Path(p).exists() for i in pruned for p in i.paths)
    assert live_names(index) == before - {"coffee.jpg", "camera.jpg"}
    assert {i.filename for i in index.list_trash()[1]} == {"coffee.jpg", "camera.jpg"}
    hits = index.search_by_ref("cat.png", k=20)[1]
    assert {"coffee.jpg", "camera.jpg"}.isdisjoint(h.image.filename for h in hits)
    assert index.prune() == []  # a second run finds nothing more


def test_a_dry_run_lists_the_same_images_and_moves_nothing(index: ImageIndex, images_copy: Path) -> None:
    (images_copy / "coffee.jpg").unlink()
    before = live_names(index)
    listed = index.prune(dry_run=True)
    assert [i.filename for i in listed] == ["coffee.jpg"]
    assert live_names(index) == before and index.list_trash()[0] == 0
    assert [i.id for i in index.prune()] == [i.id for i in listed]


def test_an_image_with_one_of_its_files_left_stays(index: ImageIndex, images_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(images_copy / "cat.png", other / "cat-again.png")
    index.ingest_folder(other)  # the same bytes, found under a second path
    (images_copy / "cat.png").unlink()
    assert index.prune() == []
    (other / "cat-again.png").unlink()
    assert [i.filename for i in index.prune()] == ["cat.png"]


def test_an_image_uploaded_without_a_path_is_never_pruned(index: ImageIndex, images_copy: Path) -> None:
    shutil.rmtree(images_copy)
    pruned = index.prune()
    assert len(pruned) == 9  # every photo but the rocket, whose bytes were also uploaded without a path
    assert live_names(index) == {"rocket.jpg"}
