"""Batch ingest on a local Ray cluster: every photo stored once, searchable, and a second run resumes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.batch import batch_ingest
from index.config import Settings
from index.pipeline import ImageSource
from index.service import ImageIndex
from tests.conftest import CountingEmbedder, derived_photos

pytestmark = pytest.mark.ray

# Distinct crops of the sample photos, made here (several batches for each of the two workers).
PHOTOS = 120


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_folder_is_stored_once_by_two_workers_and_a_second_run_resumes(
    local_ray: None, tmp_path: Path, embedder: CountingEmbedder
) -> None:
    photos = derived_photos(tmp_path / "made", PHOTOS)
    folder = tmp_path / "photos"
    (folder / "later").mkdir(parents=True)
    for p in photos[: PHOTOS // 2]:
        shutil.copy(p, folder / p.name)
    settings = Settings(data_dir=tmp_path / "data")

    first = batch_ingest(settings, folder, workers=2, batch_size=16)
    assert (first.files, first.added, first.existing, first.failed) == (PHOTOS // 2, PHOTOS // 2, 0, 0)

    # More photos arrive, one of them a copy of a stored one under another name; a broken file too.
    for p in photos[PHOTOS // 2 :]:
        shutil.copy(p, folder / "later" / p.name)
    shutil.copy(photos[0], folder / "later" / "copy-of-the-first.jpg")
    (folder / "later" / "broken.jpg").write_bytes(photos[1].read_bytes()[:100])
    second = batch_ingest(settings, folder, workers=2, batch_size=16)
    assert second.skipped == PHOTOS // 2  # read by the first run: not read again
    assert (second.added, second.existing, second.failed) == (PHOTOS - PHOTOS // 2, 1, 1)

    with ImageIndex(settings, embedder) as index:
        assert index.store.count() == len(index.vectors) == PHOTOS
        first_photo = index.resolve_ref(photos[0].name)
        assert set(first_photo.names) == {photos[0].name, "copy-of-the-first.jpg"}
        _, hits = index.search_by_ref(photos[PHOTOS - 1].name, k=3)
        assert len(hits) == 3
        # The same bytes ingested one at a time give the same vector the batch gave.
        sha, vector, _ = index.embed([ImageSource.from_path(photos[0])])[0]
        stored = index.store.embeddings([first_photo.id], index.vectors.meta.dim)[0]
    assert sha == first_photo.sha256
    assert float(vector @ stored) == pytest.approx(1.0, abs=1e-3)


def test_a_file_whose_image_is_in_the_trash_restores_it_when_ingested_again(
    local_ray: None, tmp_path: Path, images_copy: Path, embedder: CountingEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = batch_ingest(settings, images_copy, workers=1, batch_size=4)
    assert (first.added, first.restored) == (10, 0)
    with ImageIndex(settings, embedder) as index:
        coffee = index.resolve_ref("coffee.jpg")
        index.delete(coffee.id)
    second = batch_ingest(settings, images_copy, workers=1, batch_size=4)
    # Only the trashed image's file is read again (the others are recorded for live images).
    assert (second.skipped, second.added, second.existing, second.restored, second.failed) == (9, 0, 0, 1, 0)
    with ImageIndex(settings, embedder) as index:
        assert index.get(coffee.id).trashed_at is None and coffee.id in index.vectors.ids()
        assert index.search_by_ref("coffee.jpg", k=1)[0].id == coffee.id
