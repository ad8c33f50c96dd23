"""The Milvus vector store, on milvus-lite and on a real Milvus server: the same answers as FAISS, labels
filtered inside Milvus, deletes, repair on open, rebuilds, and clear errors for a collection or server that
cannot be used."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from index.config import Settings
from index.errors import BackendUnavailable
from index.rebuild import rebuild_index
from index.service import ImageIndex
from index.storage.store import ImageStore
from index.vectors.faiss_index import IndexMeta
from index.vectors.milvus import MilvusVectorStore
from tests.conftest import CAT_VARIANTS, CountingEmbedder, milvus_server_uri, unit_vectors
from tests.milvus_server import new_collection_name


@pytest.fixture(params=["milvus-lite", "milvus-server"])
def milvus_settings(request: pytest.FixtureRequest, tmp_path: Path, sample_index_dir: Path) -> Settings:
    """A copy of the ingested sample photos, its vectors in a Milvus collection (filled on first open): a milvus-lite
    file, or a collection of its own on the session's Milvus server."""
    data_dir = tmp_path / "milvus-data"
    shutil.copytree(sample_index_dir, data_dir)
    if request.param == "milvus-lite":
        return Settings(data_dir=data_dir, vector_store="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    uri = milvus_server_uri()
    return Settings(data_dir=data_dir, vector_store="milvus", milvus_uri=uri, milvus_collection=new_collection_name())


def ranked(index: ImageIndex, ref: str, **options: object) -> list[tuple[str, float]]:
    _, hits = index.search_by_ref(ref, k=20, **options)  # type: ignore[arg-type]
    return [(h.image.filename, round(h.score, 4)) for h in hits]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_milvus_ranks_and_scores_like_faiss(
    milvus_settings: Settings, sample_settings: Settings, embedder: CountingEmbedder, metric: str
) -> None:
    with ImageIndex(sample_settings, embedder) as faiss_index:
        expected = ranked(faiss_index, "cat.png", metric=metric)
    with ImageIndex(milvus_settings, embedder) as milvus_index:
        assert isinstance(milvus_index.vectors, MilvusVectorStore)
        got = ranked(milvus_index, "cat.png", metric=metric)
    assert [name for name, _ in got] == [name for name, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=2e-4)
    assert {name for name, _ in got[:4]} == CAT_VARIANTS


def test_a_label_filter_runs_inside_milvus_on_the_stored_classes(
    milvus_settings: Settings, embedder: CountingEmbedder
) -> None:
    with ImageIndex(milvus_settings, embedder) as index:
        assert isinstance(index.vectors, MilvusVectorStore)
        store_ids = index.store.ids_with_labels([282])
        query = index.store.embeddings([index.resolve_ref("coffee.jpg").id], index.vectors.meta.dim)
        # Straight at the collection: only its `classes` field can have answered this.
        _, ids = index.vectors.search_classes(query, 20, [282])
        tiger_cats = ranked(index, "coffee.jpg", label="tiger cat")
        volcanoes = ranked(index, "coffee.jpg", label="volcano")
    assert sorted(i for i in ids[0].tolist() if i >= 0) == sorted(store_ids.tolist())
    assert tiger_cats and {name for name, _ in tiger_cats} <= {"cat.png", *CAT_VARIANTS}
    assert volcanoes == []


def test_trashed_images_leave_the_collection_until_restored_and_purged_ones_never_come_back(
    milvus_settings: Settings, embedder: CountingEmbedder
) -> None:
    with ImageIndex(milvus_settings, embedder) as index:
        victim, other = index.resolve_ref("cat_crop.jpg").id, index.resolve_ref("cat_grey.png").id
        expected = ranked(index, "cat.png")
        before = len(index.vectors)
        index.delete(victim)
        index.delete(other)
        assert len(index.vectors) == before - 2
        assert victim not in index.vectors.ids().tolist()
        assert "cat_crop.jpg" not in [name for name, _ in ranked(index, "cat.png")]
        index.restore(other)
        index.purge(victim)
        # A trashed image's vector left behind (a crash between the two writes) is removed at the next open.
        index.delete(other)
        index.vectors.add(np.array([other], np.int64), index.store.embeddings([other], index.vectors.meta.dim))
    with ImageIndex(milvus_settings, embedder) as index:
        assert victim not in index.vectors.ids().tolist() and other not in index.vectors.ids().tolist()
        assert index.vectors.ids().tolist() == index.store.ids().tolist()
        index.restore(other)
        assert ranked(index, "cat.png") == [(n, s) for n, s in expected if n != "cat_crop.jpg"]


def test_the_collection_is_repaired_from_the_store_on_open(
    milvus_settings: Settings, embedder: CountingEmbedder
) -> None:
    with ImageIndex(milvus_settings, embedder) as index:
        expected = ranked(index, "cat.png")
        stored = index.store.ids()
        # A vector lost (a crash between the two writes) and one whose row is gone.
        index.vectors.remove(stored[:2])
        index.vectors.add(np.array([10_000], np.int64), unit_vectors(1, index.vectors.meta.dim))
    with ImageIndex(milvus_settings, embedder) as index:
        assert index.vectors.ids().tolist() == stored.tolist()
        assert ranked(index, "cat.png") == expected


def test_rebuild_reembeds_into_a_new_collection(milvus_settings: Settings, embedder: CountingEmbedder) -> None:
    with ImageIndex(milvus_settings, embedder) as index:
        expected = ranked(index, "cat.png")
        count = len(index.vectors)
    report = rebuild_index(milvus_settings, reembed=True)
    # milvus-lite builds only exact indexes; a server, the one it is told to (IMGSIM_MILVUS_INDEX, HNSW).
    kind = "flat" if milvus_settings.milvus_uri.endswith(".db") else "hnsw"
    assert (report.count, report.reembedded, report.index_type) == (count, count, kind)
    with ImageIndex(milvus_settings, embedder) as index:
        got = ranked(index, "cat.png")
    assert [n for n, _ in got] == [n for n, _ in expected]


@pytest.mark.parametrize(("model", "dim"), [("other_model:mean", 16), ("efficientnet_lite0:gem3+logits1.3", 8)])
def test_a_collection_built_for_another_model_or_dimension_is_refused_at_open(
    tmp_path: Path, model: str, dim: int
) -> None:
    settings = Settings(data_dir=tmp_path / "data", vector_store="milvus", milvus_uri=str(tmp_path / "m.db"))
    store = ImageStore(settings.data_dir)
    try:
        MilvusVectorStore(settings, store, IndexMeta(model=model, dim=dim, kind="flat")).close()
        with pytest.raises(
            BackendUnavailable, match=rf"holds {re.escape(model)} vectors of dimension {dim}.*IMGSIM_MILVUS"
        ):
            MilvusVectorStore(settings, store, IndexMeta(model="efficientnet_lite0:x", dim=16, kind="flat"))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("uri", "says"),
    [("http://127.0.0.1:1", "Fail connecting"), ("postgresql://db.example/imgsim", "illegal")],
)
def test_an_unreachable_milvus_or_a_url_of_another_kind_is_one_clear_error(
    tmp_path: Path, embedder: CountingEmbedder, uri: str, says: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", vector_store="milvus", milvus_uri=uri)
    with pytest.raises(BackendUnavailable, match=rf"cannot use Milvus at '{uri}': .*{says}"):
        ImageIndex(settings, embedder)
