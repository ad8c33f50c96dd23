"""rebuild_index: the FAISS file rebuilt from SQLite, and re-embedding from the kept image bytes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.config import Settings
from index.errors import ImageDecodeError, InvalidArgument, ModelMismatch
from index.model.embedder import Embedder
from index.rebuild import INDEX_FILE, rebuild_index
from index.service import ImageIndex
from index.vectors.faiss_index import VectorIndex
from tests.conftest import CAT_VARIANTS, CountingEmbedder, model_version

REFS = ("cat.png", "coffee.jpg", "rocket.jpg")


def search_results(settings: Settings, embedder: Embedder) -> dict[str, list[tuple[int, float]]]:
    with ImageIndex(settings, embedder) as index:
        return {
            ref: [(h.image.id, round(h.score, 5)) for h in index.search_by_ref(ref, k=9, metric=metric)[1]]
            for ref in REFS
            for metric in ("cosine", "euclidean")
        }


def stored_vectors(settings: Settings) -> dict[int, np.ndarray]:
    db = sqlite3.connect(settings.data_dir / "imgsim.sqlite3")
    try:
        return {i: np.frombuffer(b, np.float32) for i, b in db.execute("SELECT id, embedding FROM images")}
    finally:
        db.close()


def test_rebuilding_keeps_the_search_results(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    before = search_results(sample_settings, embedder)
    report = rebuild_index(sample_settings)
    assert (report.count, report.reembedded, report.failed) == (10, 0, 0)
    assert report.model == model_version() and report.index_type == "flat"
    assert search_results(sample_settings, embedder) == before


def test_rebuilding_twice_is_safe(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    before = search_results(sample_settings, embedder)
    first, second = rebuild_index(sample_settings), rebuild_index(sample_settings)
    assert first.count == second.count == 10
    assert search_results(sample_settings, embedder) == before
    assert [p.name for p in sample_settings.data_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_rebuilding_replaces_a_missing_faiss_file(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    before = search_results(sample_settings, embedder)
    (sample_settings.data_dir / INDEX_FILE).unlink()
    assert rebuild_index(sample_settings).count == 10
    assert len(VectorIndex.load(sample_settings.data_dir / INDEX_FILE)) == 10
    assert search_results(sample_settings, embedder) == before


def test_reembed_recomputes_every_embedding_from_the_kept_bytes(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    original = stored_vectors(sample_settings)
    db = sqlite3.connect(sample_settings.data_dir / "imgsim.sqlite3")
    with db:  # every row now holds the same wrong vector
        db.execute("UPDATE images SET embedding = (SELECT embedding FROM images ORDER BY id LIMIT 1)")
    db.close()
    report = rebuild_index(sample_settings, reembed=True)
    assert (report.count, report.reembedded, report.failed) == (10, 10, 0)
    restored = stored_vectors(sample_settings)
    assert restored.keys() == original.keys()
    for image_id, vector in original.items():
        np.testing.assert_allclose(restored[image_id], vector, atol=1e-5)
    with ImageIndex(sample_settings, embedder) as index:
        _, hits = index.search_by_ref("cat.png", k=4)
    assert {h.image.filename for h in hits} == CAT_VARIANTS


def test_rebuild_with_another_model_reembeds_and_switches_the_index(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    lite1 = Settings(**{**sample_settings.model_dump(), "model": "efficientnet_lite1"})
    report = rebuild_index(lite1)
    assert (report.count, report.reembedded, report.model) == (10, 10, model_version("efficientnet_lite1"))
    with ImageIndex(lite1, Embedder(lite1)) as index:
        assert index.stats().model == "efficientnet_lite1"
        _, hits = index.search_by_ref("cat.png", k=4)
        assert {h.image.filename for h in hits} == CAT_VARIANTS
        assert {h.image.model for h in hits} == {model_version("efficientnet_lite1")}
    with pytest.raises(ModelMismatch, match=re.escape(model_version("efficientnet_lite1"))):
        ImageIndex(sample_settings, embedder)


def test_reembed_with_a_missing_kept_image_fails_and_changes_nothing(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    before, vectors_before = search_results(sample_settings, embedder), stored_vectors(sample_settings)
    with ImageIndex(sample_settings, embedder) as index:
        index.store.blob_path(index.resolve_ref("coffee.jpg").sha256).unlink()
    lite1 = Settings(**{**sample_settings.model_dump(), "model": "efficientnet_lite1"})
    with pytest.raises(ImageDecodeError, match="1 stored images could not be re-embedded"):
        rebuild_index(lite1)
    after = stored_vectors(sample_settings)
    assert all(np.array_equal(after[i], v) for i, v in vectors_before.items())
    assert search_results(sample_settings, embedder) == before


def test_rebuild_as_hnsw_finds_the_same_neighbours(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    before = search_results(sample_settings, embedder)
    hnsw = Settings(**{**sample_settings.model_dump(), "index_kind": "hnsw"})
    assert rebuild_index(hnsw).index_type == "hnsw"
    assert VectorIndex.load(sample_settings.data_dir / INDEX_FILE).meta.kind == "hnsw"
    assert search_results(hnsw, embedder) == before


def test_rebuilding_an_empty_data_dir_gives_an_empty_index(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    report = rebuild_index(Settings(data_dir=tmp_path / "data"))
    assert report.count == 0
    assert len(VectorIndex.load(tmp_path / "data" / INDEX_FILE)) == 0


def test_rebuilding_a_data_dir_that_does_not_exist_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a directory"):
        rebuild_index(Settings(data_dir=tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


def test_switching_to_an_embedding_of_another_width_rebuilds_everything(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    other = "mean" if embedder.dim != 1280 else "gem+logits"
    switched = Settings(**{**sample_settings.model_dump(), "embedding": other})
    report = rebuild_index(switched)
    assert (report.count, report.reembedded, report.model) == (10, 10, f"efficientnet_lite0:{other}")
    new_embedder = Embedder(switched)
    with ImageIndex(switched, new_embedder) as index:
        assert index.vectors.meta.dim == new_embedder.dim != embedder.dim
        assert {len(v) for v in stored_vectors(switched).values()} == {new_embedder.dim}
        _, hits = index.search_by_ref("cat.png", k=4)
    assert {h.image.filename for h in hits} == CAT_VARIANTS
