"""The FAISS vector index: exact search, metrics, removal and atomic persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.vectors.faiss_index import IndexFileError, IndexMeta, VectorIndex, scores_for_metric
from tests.conftest import unit_vectors

DIM = 64


def filled(kind: str, n: int = 300, seed: int = 0) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    index = VectorIndex(IndexMeta(model="test:mean", dim=DIM, kind=kind))
    ids = np.arange(1, n + 1, dtype=np.int64) * 3  # ids need not be dense
    vectors = unit_vectors(n, DIM, seed)
    index.add(ids, vectors)
    return index, ids, vectors


def test_flat_search_equals_numpy_brute_force() -> None:
    index, ids, vectors = filled("flat")
    queries = unit_vectors(5, DIM, seed=1)
    scores, found = index.search(queries, k=10)
    inner = queries @ vectors.T
    for q in range(5):
        order = np.argsort(-inner[q], kind="stable")[:10]
        np.testing.assert_array_equal(found[q], ids[order])
        np.testing.assert_allclose(scores[q], inner[q, order], atol=1e-5)


def test_scores_for_each_metric_equal_numpy() -> None:
    a, b = unit_vectors(50, DIM, seed=2), unit_vectors(50, DIM, seed=3)
    inner = np.sum(a * b, axis=1)
    cosine = inner / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(scores_for_metric(inner, "cosine"), cosine, atol=1e-6)
    np.testing.assert_allclose(scores_for_metric(inner, "dot"), np.einsum("ij,ij->i", a, b), atol=1e-6)
    np.testing.assert_allclose(scores_for_metric(inner, "euclidean"), np.linalg.norm(a - b, axis=1), atol=1e-5)


def test_euclidean_distance_of_a_vector_to_itself_is_zero_not_nan() -> None:
    v = unit_vectors(20, DIM, seed=4)
    inner = np.einsum("ij,ij->i", v, v)  # may round to slightly above 1
    distances = scores_for_metric(inner, "euclidean")
    assert not np.isnan(distances).any()
    np.testing.assert_allclose(distances, 0.0, atol=1e-3)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_removed_ids_are_never_returned(kind: str) -> None:
    index, ids, vectors = filled(kind)
    gone = ids[:50]
    index.remove(gone)
    assert len(index) == len(ids) - 50
    assert not np.isin(gone, index.ids()).any()
    _, found = index.search(vectors[:50], k=20)
    assert not np.isin(found, gone).any()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_allowed_ids_restrict_the_search(kind: str) -> None:
    index, ids, vectors = filled(kind)
    allowed = ids[100:110]
    _, found = index.search(vectors[:3], k=5, allowed=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    assert (found[:, 0] >= 0).all()


def test_hnsw_finds_nearly_the_same_neighbours_as_exact_search() -> None:
    flat, _, vectors = filled("flat", n=2000)
    hnsw, _, _ = filled("hnsw", n=2000)
    queries = vectors[:100] + 0.05 * unit_vectors(100, DIM, seed=9)
    _, exact = flat.search(queries, k=10)
    _, approx = hnsw.search(queries, k=10)
    recall = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact, approx, strict=True)])
    assert recall >= 0.95


def test_wrongly_shaped_vectors_are_refused() -> None:
    index, _, _ = filled("flat", n=3)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([100, 101], np.int64), unit_vectors(2, DIM + 1))
    assert len(index) == 3


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_saved_index_loads_with_the_same_results_and_removals(tmp_path: Path, kind: str) -> None:
    index, ids, vectors = filled(kind)
    index.remove(ids[:5])
    path = tmp_path / "vectors.faiss"
    index.save(path)
    assert not index.dirty
    loaded = VectorIndex.load(path)
    assert loaded.meta == index.meta
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    before, after = index.search(vectors[:10], k=7), loaded.search(vectors[:10], k=7)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])


def test_save_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    index, ids, _ = filled("flat", n=10)
    index.save(path)
    index.remove(ids[:2])
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]
    assert len(VectorIndex.load(path)) == 8


def test_missing_file_raises_index_file_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError):
        VectorIndex.load(tmp_path / "absent.faiss")


@pytest.mark.parametrize("keep", [0, 5, 30, 0.5, 0.99])
def test_truncated_file_raises_index_file_error(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "vectors.faiss"
    filled("flat", n=20)[0].save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_a_single_damaged_byte_anywhere_raises_index_file_error(tmp_path: Path, where: float) -> None:
    path = tmp_path / "vectors.faiss"
    filled("flat", n=200)[0].save(path)
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)


def test_foreign_file_and_trailing_bytes_raise_index_file_error(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    path.write_bytes(b"not an index at all" * 10)
    with pytest.raises(IndexFileError, match="not an index file"):
        VectorIndex.load(path)
    filled("flat", n=20)[0].save(path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IndexFileError, match="trailing"):
        VectorIndex.load(path)
