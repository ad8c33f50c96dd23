"""The Milvus store on a real Milvus standalone server (2.3 here): what it detects of the server, and what it
does with what the server lacks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from index.config import Settings
from index.service import ImageIndex
from index.vectors.milvus import MilvusFeatures, MilvusVectorStore
from tests.conftest import CountingEmbedder, backend_overrides


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", **backend_overrides("postgresql-milvus-server", tmp_path))


def test_the_running_server_is_detected_and_what_it_lacks_is_said_in_one_line_without_a_traceback(
    server_settings: Settings, embedder: CountingEmbedder, images_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with ImageIndex(server_settings, embedder) as index:
        assert isinstance(index.vectors, MilvusVectorStore)
        features = index.vectors.features
        index.ingest_folder(images_dir)
        _, hits = index.search_by_ref("coffee.jpg", k=3, label="tiger cat")
    assert features.version.startswith("v2.3.")
    assert (features.local, features.array_index, features.range_search, features.count) == (False, False, True, True)
    # The label filter still runs inside Milvus (a scan of the classes array, there being no index on it before 2.4).
    assert hits and all("tiger cat" in [p.label for p in h.image.predictions] for h in hits)
    milvus_lines = [r for r in caplog.records if "Milvus" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len([r for r in milvus_lines if "classes array" in r.getMessage()]) <= 1
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize(
    ("version", "array_index", "range_search", "count"),
    [
        # Versions that cannot run here (only the `milvus` package's 2.3.5 can): their feature sets, from the version
        # string alone, are what the store would use.
        ("v2.4.13", True, True, True),
        ("2.5.10", True, True, True),
        ("v2.3.5-lite", False, True, True),
        ("v2.2.8", False, False, False),
    ],
)
def test_features_follow_the_server_version(version: str, array_index: bool, range_search: bool, count: bool) -> None:
    features = MilvusFeatures.of(version, local=False)
    assert (features.array_index, features.range_search, features.count) == (array_index, range_search, count)
    assert len(features.missing()) == [array_index, range_search, count].count(False)


def test_milvus_lite_has_no_range_search_and_nothing_to_warn_about() -> None:
    features = MilvusFeatures.of("milvus_lite-3.2.2", local=True)
    assert not features.range_search and features.missing() == []


def test_a_delete_is_not_seen_by_the_process_that_made_it_even_at_session_consistency(
    server_settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    with ImageIndex(server_settings, embedder) as index:
        index.ingest_folder(images_dir)
        vectors = index.vectors
        assert isinstance(vectors, MilvusVectorStore)
        ids = vectors.ids()
        stored = index.store.embeddings(ids.tolist(), vectors.meta.dim)
        for n, (gone, vector) in enumerate(zip(ids, stored, strict=True)):
            vectors.remove(np.array([gone]))
            # At once, straight at the collection: its own vector does not find it, and the count has dropped.
            _, found = vectors.search(vector.reshape(1, -1), len(ids))
            assert gone not in found[0]
            assert len(vectors) == len(ids) - n - 1
