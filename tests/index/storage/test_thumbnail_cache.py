"""Thumbnails kept in the data directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from index.config import Settings
from index.errors import UnknownReference
from index.model.embedder import Embedder
from index.service import ImageIndex
from index.storage.thumbnail_cache import ThumbnailCache
from tests.conftest import IMAGES_DIR

SHA = "ab" + "0" * 62


def test_a_thumbnail_is_made_once_then_read_back_from_the_data_dir(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path)
    reads: list[int] = []

    def original() -> bytes:
        reads.append(1)
        return (IMAGES_DIR / "astronaut.jpg").read_bytes()

    first = cache.get(SHA, original)
    assert cache.path(SHA) == tmp_path / "thumbnails" / "ab" / f"{SHA}.jpg"
    assert cache.path(SHA).read_bytes() == first
    assert cache.get(SHA, original) == first
    assert len(reads) == 1
    assert max(Image.open(io.BytesIO(first)).size) == 256
    assert [p.name for p in cache.path(SHA).parent.iterdir()] == [f"{SHA}.jpg"]  # no temporary file left


def test_a_missing_thumbnail_is_made_again_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path, size=64)
    data = (IMAGES_DIR / "coffee.jpg").read_bytes()
    first = cache.get(SHA, lambda: data)
    cache.path(SHA).unlink()
    assert cache.get(SHA, lambda: data) == first
    cache.remove(SHA)
    assert not cache.path(SHA).exists()
    cache.remove(SHA)  # removing twice is harmless


def test_the_index_serves_thumbnails_in_the_trash_too_and_deletes_them_with_the_image(
    sample_settings: Settings, embedder: Embedder
) -> None:
    with ImageIndex(sample_settings, embedder) as index:
        coffee = index.resolve_ref("coffee.jpg")
        info, data = index.thumbnail(coffee.id)
        assert info.id == coffee.id
        assert Image.open(io.BytesIO(data)).size == (256, 171)
        assert index.thumbnails.path(coffee.sha256).is_file()
        index.delete(coffee.id)  # the trash view shows it
        assert index.thumbnail(coffee.id)[1] == data
        index.purge(coffee.id)
        assert not index.thumbnails.path(coffee.sha256).exists()
        with pytest.raises(UnknownReference):
            index.thumbnail(coffee.id)


def test_a_thumbnail_made_while_its_image_is_deleted_for_good_does_not_stay_on_disk(
    sample_settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ImageIndex(sample_settings, embedder) as index:
        rocket = index.resolve_ref("rocket.jpg")
        index.delete(rocket.id)
        read_blob = index.store.read_blob

        def read_then_purged(sha256: str) -> bytes:
            data = read_blob(sha256)
            index.purge(rocket.id)  # another request, between the read and the thumbnail's write
            return data

        monkeypatch.setattr(index.store, "read_blob", read_then_purged)
        with pytest.raises(UnknownReference):
            index.thumbnail(rocket.id)
        assert not index.thumbnails.path(rocket.sha256).exists()
        assert index.store.get(rocket.id) is None


def test_an_image_whose_bytes_are_not_kept_has_no_thumbnail(sample_settings: Settings, embedder: Embedder) -> None:
    with ImageIndex(sample_settings, embedder) as index:
        rocket = index.resolve_ref("rocket.jpg")
        index.store.blob_path(rocket.sha256).unlink()
        with pytest.raises(UnknownReference, match="not kept"):
            index.thumbnail(rocket.id)
