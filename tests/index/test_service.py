"""The image index service: ingest, dedupe, search, delete, and keeping FAISS in line with SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from index.config import Settings
from index.errors import (
    AmbiguousReference,
    ImageDecodeError,
    ImageInTrash,
    InvalidArgument,
    ModelMismatch,
    NotInTrash,
    UnknownReference,
)
from index.model.embedder import Embedder
from index.model.registry import EMBEDDINGS, resolve_embedding
from index.pipeline import ImageSource
from index.rebuild import INDEX_FILE
from index.service import ImageIndex
from index.vectors.faiss_index import VectorIndex
from tests.conftest import CAT_VARIANTS, REPO_ROOT, CountingEmbedder, ImageFactory, model_version

OTHER_EMBEDDING = next(name for name in EMBEDDINGS if name != resolve_embedding("default").name)


def open_index(settings: Settings, embedder: Embedder) -> ImageIndex:
    return ImageIndex(settings, embedder)


def hit_names(hits: list) -> list[str]:
    return [h.image.filename for h in hits]


def faiss_ids(settings: Settings) -> list[int]:
    return VectorIndex.load(settings.data_dir / INDEX_FILE).ids().tolist()


def sqlite_ids(settings: Settings) -> list[int]:
    """The live images' ids, as SQLite itself has them."""
    db = sqlite3.connect(settings.data_dir / "imgsim.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT id FROM images WHERE trashed_at IS NULL ORDER BY id")]
    finally:
        db.close()


# --- ingest ---------------------------------------------------------------------------------------------


def test_ingesting_a_folder_embeds_each_image_once_in_batches(
    settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    calls, embedded = embedder.forward_calls, embedder.images_embedded
    with open_index(settings, embedder) as index:
        results = index.ingest_folder(images_dir)
        assert index.stats().count == 10
    assert [r.name for r in results] == sorted(p.name for p in images_dir.iterdir() if p.suffix != ".md")
    assert {r.status for r in results} == {"added"}
    assert len({r.id for r in results}) == 10
    assert all(r.predictions for r in results)
    assert (embedder.forward_calls - calls, embedder.images_embedded - embedded) == (1, 10)


def test_ingested_images_persist_after_reopening(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    with open_index(sample_settings, embedder) as index:
        ref, hits = index.search_by_ref("cat.png", k=9)
        count = index.list_images()[0]
    with open_index(sample_settings, embedder) as reopened:
        ref_again, hits_again = reopened.search_by_ref("cat.png", k=9)
        assert reopened.list_images()[0] == count == 10
    assert ref_again == ref
    assert [(h.image.id, round(h.score, 6)) for h in hits_again] == [(h.image.id, round(h.score, 6)) for h in hits]
    assert set(hit_names(hits)[:4]) == CAT_VARIANTS


def test_reingesting_same_bytes_does_not_embed_again(
    sample_settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    embedded = embedder.images_embedded
    cat = (images_dir / "cat.png").read_bytes()
    with open_index(sample_settings, embedder) as index:
        (result,) = index.ingest([ImageSource(name="chelsea.png", data=cat)])
        again = index.ingest_folder(images_dir)
        assert index.list_images()[0] == 10
        info = index.resolve_ref("chelsea.png")
    assert embedder.images_embedded == embedded
    assert result.status == "exists"
    assert result.predictions and result.predictions[0].class_index in range(281, 286)
    assert {r.status for r in again} == {"exists"}
    assert info.id == result.id
    assert info.names == ["cat.png", "chelsea.png"]


def test_duplicate_bytes_in_one_call_are_embedded_once(
    settings: Settings, embedder: CountingEmbedder, make_image: ImageFactory
) -> None:
    a, b = make_image("PNG", seed=1), make_image("PNG", seed=2)
    embedded = embedder.images_embedded
    with open_index(settings, embedder) as index:
        results = index.ingest(
            [ImageSource("a.png", data=a), ImageSource("a-copy.png", data=a), ImageSource("b.png", data=b)]
        )
    assert embedder.images_embedded - embedded == 2
    assert [r.status for r in results] == ["added", "exists", "added"]
    assert results[0].id == results[1].id != results[2].id


def test_corrupt_images_in_a_folder_are_reported_and_skipped(
    settings: Settings, embedder: CountingEmbedder, images_copy: Path, truncated_jpeg: bytes
) -> None:
    (images_copy / "broken.jpg").write_bytes(truncated_jpeg)
    (images_copy / "notes.jpg").write_text("shopping list: milk, eggs\n")
    (images_copy / "empty.png").write_bytes(b"")
    with open_index(settings, embedder) as index:
        results = {r.name: r for r in index.ingest_folder(images_copy)}
        assert index.list_images()[0] == 10
    errors = {n: r for n, r in results.items() if r.status == "error"}
    assert sorted(errors) == ["broken.jpg", "empty.png", "notes.jpg"]
    assert all(isinstance(r.error, ImageDecodeError) and r.id is None for r in errors.values())
    assert "truncated" in str(errors["broken.jpg"].error)
    assert sum(r.status == "added" for r in results.values()) == 10

    embedded = embedder.images_embedded
    with open_index(settings, embedder) as index:
        again = {r.name: r.status for r in index.ingest_folder(images_copy)}
    assert embedder.images_embedded == embedded
    assert [n for n, s in again.items() if s == "error"] == ["broken.jpg", "empty.png", "notes.jpg"]


def test_strict_ingest_with_a_bad_image_stores_nothing(
    settings: Settings, embedder: CountingEmbedder, make_image: ImageFactory
) -> None:
    with open_index(settings, embedder) as index:
        sources = [ImageSource("good.png", data=make_image(seed=3)), ImageSource("bad.jpg", data=b"nope")]
        with pytest.raises(ImageDecodeError, match=r"bad\.jpg"):
            index.ingest(sources, strict=True)
        assert index.list_images()[0] == 0


def test_embed_returns_vectors_and_stores_nothing(
    settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    with open_index(settings, embedder) as index:
        ((sha, vector, preds),) = index.embed([ImageSource.from_path(images_dir / "coffee.jpg")])
        assert index.list_images()[0] == 0
    assert len(sha) == 64 and vector.shape == (embedder.dim,)
    assert preds[0].label == "espresso"


# --- search ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_search_scores_equal_numpy_for_each_metric(
    sample_settings: Settings, embedder: CountingEmbedder, metric: str
) -> None:
    with open_index(sample_settings, embedder) as index:
        ids = index.store.ids().tolist()
        vectors = index.store.embeddings(ids, index.vectors.meta.dim).astype(np.float64)
        ref, hits = index.search_by_ref("cat.png", k=20, metric=metric)
        ranked = index.rank(ref.id, ids, metric)
    by_id = dict(zip(ids, vectors, strict=True))
    q = by_id[ref.id]
    expected = {
        "cosine": lambda v: v @ q / (np.linalg.norm(v) * np.linalg.norm(q)),
        "dot": lambda v: v @ q,
        "euclidean": lambda v: np.linalg.norm(v - q),
    }[metric]
    assert len(hits) == 9 and ref.id not in [h.image.id for h in hits]
    for hit in hits:
        assert hit.score == pytest.approx(expected(by_id[hit.image.id]), abs=2e-5)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=metric != "euclidean")
    assert set(hit_names(hits)[:4]) == CAT_VARIANTS
    assert ranked[0] == (ref.id, pytest.approx(0.0 if metric == "euclidean" else 1.0, abs=1e-4))
    for image_id, score in ranked:
        assert score == pytest.approx(expected(by_id[image_id]), abs=2e-5)


def test_search_by_image_finds_the_cat_variants_and_stores_nothing(
    sample_settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    cat = (images_dir / "cat.png").read_bytes()
    with open_index(sample_settings, embedder) as index:
        sha, hits = index.search_by_image(cat, "query.png", k=5)
        assert index.list_images()[0] == 10
        with pytest.raises(UnknownReference):
            index.resolve_ref("query.png")
    assert hit_names(hits)[0] == "cat.png"  # the same content, not excluded here
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert set(hit_names(hits)[1:5]) == CAT_VARIANTS
    assert sha == index.resolve_ref("cat.png").sha256


def test_label_filter_keeps_only_images_predicted_as_that_class(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        _, hits = index.search_by_ref("coffee.jpg", k=10, label="tiger cat")
        _, none = index.search_by_ref("coffee.jpg", k=10, label="volcano")
        with pytest.raises(InvalidArgument, match="no ImageNet class"):
            index.search_by_ref("coffee.jpg", label="unicorn")
    assert hits and set(hit_names(hits)) <= {"cat.png", *CAT_VARIANTS}
    assert all(282 in [p.class_index for p in h.image.predictions] for h in hits)
    assert none == []


@pytest.mark.parametrize(("k", "metric"), [(0, "cosine"), (-3, "cosine"), (5, "manhattan")])
def test_bad_search_arguments_raise_invalid_argument(
    sample_settings: Settings, embedder: CountingEmbedder, k: int, metric: str
) -> None:
    with open_index(sample_settings, embedder) as index, pytest.raises(InvalidArgument):
        index.search_by_ref("cat.png", k=k, metric=metric)


def test_references_resolve_by_id_hash_or_unique_name(
    sample_settings: Settings, embedder: CountingEmbedder, make_image: ImageFactory
) -> None:
    with open_index(sample_settings, embedder) as index:
        info = index.resolve_ref("coffee.jpg")
        assert index.resolve_ref(str(info.id)) == info
        assert index.resolve_ref(info.sha256.upper()) == info
        with pytest.raises(UnknownReference, match=r"nothing\.png"):
            index.resolve_ref("nothing.png")
        index.ingest([ImageSource("twice.png", data=make_image(seed=5))])
        index.ingest([ImageSource("twice.png", data=make_image(seed=6))])
        with pytest.raises(AmbiguousReference, match=r"twice\.png"):
            index.resolve_ref("twice.png")


def test_listing_pages_through_every_image_in_id_order(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    with open_index(sample_settings, embedder) as index:
        total, first = index.list_images(0, 4)
        _, rest = index.list_images(4, 100)
        with pytest.raises(InvalidArgument):
            index.list_images(0, 0)
        with pytest.raises(InvalidArgument):
            index.list_images(-1, 10)
    ids = [i.id for i in first + rest]
    assert total == 10 and len(first) == 4 and ids == sorted(set(ids)) and len(ids) == 10


# --- delete ---------------------------------------------------------------------------------------------


def test_a_deleted_image_goes_to_the_trash_hidden_from_search_and_kept_until_purged(
    sample_settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    with open_index(sample_settings, embedder) as index:
        victim = index.resolve_ref("cat_mirror.png")
        blob = index.store.blob_path(victim.sha256)
        trashed = index.delete(victim.id)
        assert trashed.id == victim.id and trashed.trashed_at is not None
        _, hits = index.search_by_ref("cat.png", k=20)
        assert victim.id not in [h.image.id for h in hits] and len(hits) == 8
        _, uploaded = index.search_by_image((images_dir / "cat_mirror.png").read_bytes(), "q.png", k=20)
        assert victim.id not in [h.image.id for h in uploaded]
        assert index.list_images()[0] == 9 and index.stats().count == 9 and index.stats().trashed == 1
        # Kept whole: its row, names, bytes and thumbnail.
        assert index.get(victim.id).trashed_at == trashed.trashed_at
        assert index.content(victim.id)[1] == (images_dir / "cat_mirror.png").read_bytes()
        with pytest.raises(ImageInTrash, match="in the trash"):
            index.resolve_ref("cat_mirror.png")
        with pytest.raises(ImageInTrash, match="in the trash"):
            index.search_by_ref(str(victim.id))
        with pytest.raises(ImageInTrash):
            index.delete(victim.id)
    assert victim.id not in faiss_ids(sample_settings)
    with open_index(sample_settings, embedder) as reopened:
        assert reopened.list_images()[0] == 9 and reopened.list_trash() == (1, [reopened.get(victim.id)])
        assert victim.id not in reopened.vectors.ids()
        assert reopened.purge(victim.id).id == victim.id
        assert not blob.exists()
        with pytest.raises(UnknownReference):
            reopened.get(victim.id)
        with pytest.raises(UnknownReference):
            reopened.restore(victim.id)
        again = {r.name: r for r in reopened.ingest_folder(images_dir)}["cat_mirror.png"]
    assert again.status == "added" and again.id is not None
    assert again.id > victim.id


def test_a_restored_image_is_back_in_search_and_listings_under_its_id(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        _, before = index.search_by_ref("cat.png", k=9)
        victim = index.resolve_ref("cat_crop.jpg")
        index.delete(victim.id)
        restored = index.restore(victim.id)
        assert restored.id == victim.id and restored.trashed_at is None
        _, after = index.search_by_ref("cat.png", k=9)
        assert [(h.image.id, round(h.score, 5)) for h in after] == [(h.image.id, round(h.score, 5)) for h in before]
        assert index.list_images()[0] == 10 and index.list_trash() == (0, [])
        with pytest.raises(NotInTrash, match="not in the trash"):
            index.restore(victim.id)
        with pytest.raises(NotInTrash, match="not in the trash"):
            index.purge(victim.id)  # a live image is never deleted for good
        assert index.get(victim.id).trashed_at is None
    with open_index(sample_settings, embedder) as reopened:
        assert victim.id in reopened.vectors.ids() and reopened.list_images()[0] == 10


def test_ingesting_the_bytes_of_a_trashed_image_restores_it_under_its_id(
    sample_settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    with open_index(sample_settings, embedder) as index:
        victim = index.resolve_ref("coffee.jpg")
        index.delete(victim.id)
        calls = embedder.forward_calls
        data = (images_dir / "coffee.jpg").read_bytes()
        results = index.ingest(
            [ImageSource(name="espresso.jpg", data=data), ImageSource(name="again.jpg", data=data)], strict=True
        )
        assert [(r.status, r.id) for r in results] == [("restored", victim.id), ("exists", victim.id)]
        assert embedder.forward_calls == calls  # restored from its stored embedding
        assert index.get(victim.id).trashed_at is None
        assert set(index.get(victim.id).names) == {"coffee.jpg", "espresso.jpg", "again.jpg"}
        assert index.search_by_ref("espresso.jpg", k=1)[0].id == victim.id
        # A strict ingest with a bad file restores nothing either.
        index.delete(victim.id)
        with pytest.raises(ImageDecodeError):
            index.ingest([ImageSource(name="c.jpg", data=data), ImageSource(name="bad.jpg", data=b"no")], strict=True)
        assert index.get(victim.id).trashed_at is not None


def test_images_in_the_trash_longer_than_the_retention_are_deleted_for_good_at_open(
    sample_settings: Settings, embedder: CountingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    with open_index(sample_settings, embedder) as index:
        old, recent = index.resolve_ref("rocket.jpg"), index.resolve_ref("coins.jpg")
        index.delete(old.id)
        index.delete(recent.id)
    db = sqlite3.connect(sample_settings.data_dir / "imgsim.sqlite3")
    with db:  # as if rocket.jpg had been moved to the trash 31 days ago
        db.execute("UPDATE images SET trashed_at = datetime('now', '-31 days') WHERE id = ?", (old.id,))
    db.close()
    keep_all = Settings(**{**sample_settings.model_dump(), "trash_retention_days": 0})
    with open_index(keep_all, embedder) as index:
        assert index.list_trash()[0] == 2
    with caplog.at_level("INFO"), open_index(sample_settings, embedder) as index:
        assert [i.id for i in index.list_trash()[1]] == [recent.id]
        with pytest.raises(UnknownReference):
            index.get(old.id)
        assert not index.store.blob_path(old.sha256).exists()
    assert "deleted for good 1 images that were in the trash for more than 30 days" in caplog.text


def test_emptying_the_trash_deletes_only_what_is_in_it(sample_settings: Settings, embedder: CountingEmbedder) -> None:
    with open_index(sample_settings, embedder) as index:
        ids = [index.resolve_ref(name).id for name in ("rocket.jpg", "coins.jpg", "camera.jpg")]
        index.delete(ids[0])
        index.delete(ids[1])
        assert index.empty_trash() == 2
        assert index.empty_trash() == 0
        assert index.list_images()[0] == 8 and index.get(ids[2]).trashed_at is None
        assert index.store.ids().tolist() == index.vectors.ids().tolist()


def test_deleting_without_closing_is_not_undone_by_reopening(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    index = open_index(sample_settings, embedder)
    victim = index.resolve_ref("rocket.jpg")
    index.delete(victim.id)
    # No flush, no close: the process might have died here (and the operating system dropped its lock).
    index.lock.release()
    with open_index(sample_settings, embedder) as reopened:
        assert victim.id not in reopened.vectors.ids().tolist()
        assert reopened.list_images()[0] == 9


# --- model identity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "other"),
    [
        ({"model": "efficientnet_lite1"}, model_version("efficientnet_lite1")),
        ({"embedding": OTHER_EMBEDDING}, f"efficientnet_lite0:{OTHER_EMBEDDING}"),
    ],
)
def test_index_built_with_one_model_refuses_another_naming_both(
    sample_settings: Settings, embedder: CountingEmbedder, overrides: dict[str, str], other: str
) -> None:
    other_settings = Settings(**{**sample_settings.model_dump(), **overrides})
    with pytest.raises(ModelMismatch) as info:
        ImageIndex(other_settings, Embedder(other_settings))
    message = str(info.value)
    assert model_version() in message and other in message
    assert "rebuild-index" in message
    with open_index(sample_settings, embedder) as index:
        assert index.list_images()[0] == 10


# --- FAISS and SQLite disagreeing -----------------------------------------------------------------------


def _delete_file(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _scribble_over_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = np.random.default_rng(1).bytes(4096)
    path.write_bytes(bytes(data))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_delete_file, _truncate, _garbage, _scribble_over_the_middle, _empty])
def test_damaged_faiss_file_is_rebuilt_on_open(
    sample_settings: Settings, embedder: CountingEmbedder, damage: object
) -> None:
    with open_index(sample_settings, embedder) as index:
        expected = [(h.image.id, round(h.score, 5)) for h in index.search_by_ref("cat.png", k=9)[1]]
    damage(sample_settings.data_dir / INDEX_FILE)  # type: ignore[operator]
    with open_index(sample_settings, embedder) as index:
        assert index.vectors.ids().tolist() == sqlite_ids(sample_settings)
        got = [(h.image.id, round(h.score, 5)) for h in index.search_by_ref("cat.png", k=9)[1]]
    assert got == expected
    assert faiss_ids(sample_settings) == sqlite_ids(sample_settings)


def test_row_removed_from_sqlite_behind_its_back_is_dropped_from_faiss_on_open(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        gone = index.resolve_ref("cat_crop.jpg").id
    db = sqlite3.connect(sample_settings.data_dir / "imgsim.sqlite3")
    with db:
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM images WHERE id = ?", (gone,))
    db.close()
    with open_index(sample_settings, embedder) as index:
        assert index.vectors.ids().tolist() == sqlite_ids(sample_settings)
        _, hits = index.search_by_ref("cat.png", k=20)
    assert gone not in [h.image.id for h in hits] and len(hits) == 8
    assert gone not in faiss_ids(sample_settings)


def test_vector_for_an_id_sqlite_lacks_is_dropped_on_open(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        cat = index.resolve_ref("cat.png")
        cat_vector = index.store.embeddings([cat.id], index.vectors.meta.dim)
    path = sample_settings.data_dir / INDEX_FILE
    vectors = VectorIndex.load(path)
    vectors.add(np.array([10_000], np.int64), cat_vector)  # would be the best hit for the cat
    vectors.save(path)
    with open_index(sample_settings, embedder) as index:
        assert index.vectors.ids().tolist() == sqlite_ids(sample_settings)
        _, hits = index.search_by_ref("cat.png", k=20)
    assert 10_000 not in [h.image.id for h in hits]
    assert 10_000 not in faiss_ids(sample_settings)


def test_search_never_returns_an_id_removed_from_sqlite_while_open(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        gone = index.resolve_ref("cat_grey.png").id
        db = sqlite3.connect(sample_settings.data_dir / "imgsim.sqlite3")
        with db:
            db.execute("DELETE FROM images WHERE id = ?", (gone,))
        db.close()
        _, hits = index.search_by_ref("cat.png", k=20)
    assert gone not in [h.image.id for h in hits]


def test_faiss_file_built_for_another_model_is_rebuilt_on_open(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    path = sample_settings.data_dir / INDEX_FILE
    stale = VectorIndex.load(path)
    stale.meta = type(stale.meta)(model="efficientnet_lite2:mean", dim=stale.meta.dim, kind="flat")
    stale.save(path)
    with open_index(sample_settings, embedder) as index:
        assert index.vectors.meta.model == model_version()
        assert index.vectors.ids().tolist() == sqlite_ids(sample_settings)
    assert VectorIndex.load(path).meta.model == model_version()


def test_ingest_without_flush_or_close_loses_nothing(
    settings: Settings, embedder: CountingEmbedder, images_dir: Path
) -> None:
    index = open_index(settings, embedder)
    index.ingest_folder(images_dir)
    # Neither flush() nor close(): SQLite has committed, the FAISS file on disk is still the empty one.
    assert faiss_ids(settings) == []
    index.lock.release()  # as the operating system does for a process that died
    with open_index(settings, embedder) as reopened:
        assert reopened.vectors.ids().tolist() == sqlite_ids(settings)
        _, hits = reopened.search_by_ref("cat.png", k=9)
    assert len(hits) == 9 and set(hit_names(hits)[:4]) == CAT_VARIANTS


def test_a_process_killed_between_sqlite_commit_and_faiss_save_loses_nothing(
    tmp_path: Path, embedder: CountingEmbedder, images_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from index.config import Settings
        from index.service import ImageIndex

        index = ImageIndex(Settings(data_dir=Path({str(data_dir)!r})))
        results = index.ingest_folder(Path({str(images_dir)!r}))
        print(sum(r.status == "added" for r in results), flush=True)
        os._exit(0)  # dies without saving the vector index
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"
    settings = Settings(data_dir=data_dir)
    assert len(faiss_ids(settings)) < 10
    with open_index(settings, embedder) as index:
        assert index.vectors.ids().tolist() == sqlite_ids(settings)
        assert len(sqlite_ids(settings)) == 10
        _, hits = index.search_by_ref("cat.png", k=9)
    assert set(hit_names(hits)[:4]) == CAT_VARIANTS


def test_an_hnsw_index_is_repaired_and_deletes_like_the_flat_one(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    from index.rebuild import rebuild_index

    hnsw = Settings(**{**sample_settings.model_dump(), "index_kind": "hnsw"})
    assert rebuild_index(hnsw).index_type == "hnsw"
    with open_index(hnsw, embedder) as index:
        assert index.stats().index_type == "hnsw"
        expected = [h.image.id for h in index.search_by_ref("cat.png", k=9)[1]]
        deleted = index.resolve_ref("cat_crop.jpg").id
        index.delete(deleted)
        behind_its_back = index.resolve_ref("cat_grey.png").id
    db = sqlite3.connect(sample_settings.data_dir / "imgsim.sqlite3")
    with db:
        db.execute("DELETE FROM images WHERE id = ?", (behind_its_back,))
    db.close()
    with open_index(hnsw, embedder) as index:
        assert index.vectors.meta.kind == "hnsw"
        assert index.vectors.ids().tolist() == sqlite_ids(hnsw)
        assert len(index.vectors) == 8
        hits = [h.image.id for h in index.search_by_ref("cat.png", k=9)[1]]
        filtered = index.search_by_ref("coffee.jpg", k=9, label="tiger cat")[1]
        # Restored: the graph still holds its vector, which is found again (once).
        index.restore(deleted)
        restored = [h.image.id for h in index.search_by_ref("cat.png", k=9)[1]]
        assert len(index.vectors) == 9 and index.vectors.ids().tolist() == sqlite_ids(hnsw)
    assert hits == [i for i in expected if i not in (deleted, behind_its_back)]
    assert filtered and deleted not in [h.image.id for h in filtered]
    assert restored == [i for i in expected if i != behind_its_back]
    with open_index(hnsw, embedder) as index:
        assert [h.image.id for h in index.search_by_ref("cat.png", k=9)[1]] == restored


def test_a_large_ingest_goes_in_chunks_with_duplicates_and_errors_across_them(
    settings: Settings, embedder: CountingEmbedder, images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.ingest

    monkeypatch.setattr(index.ingest, "INGEST_CHUNK", 3)
    files = sorted(p for p in images_dir.iterdir() if p.suffix != ".md")
    cat = (images_dir / "cat.png").read_bytes()
    sources = [
        *[ImageSource.from_path(p) for p in files],
        ImageSource(name="broken.jpg", data=b"not an image"),
        ImageSource(name="cat-again.png", data=cat),
        ImageSource(name="cat-third.png", data=cat),
    ]
    before = embedder.images_embedded
    with ImageIndex(settings, embedder) as index:
        results = index.ingest(sources)
        assert [r.name for r in results] == [s.name for s in sources]
        assert [r.status for r in results] == ["added"] * len(files) + ["error", "exists", "exists"]
        cat_id = next(r.id for r in results if r.name == "cat.png")
        assert results[-1].id == results[-2].id == cat_id
        assert len(index.vectors) == len(files)
    assert embedder.images_embedded - before == len(files)


def test_opening_an_index_whose_size_calls_for_another_kind_says_how_to_switch(
    sample_settings: Settings, embedder: CountingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    small_threshold = Settings(**{**sample_settings.model_dump(), "exact_search_threshold": 5})
    with caplog.at_level("WARNING", logger="index.service"), ImageIndex(small_threshold, embedder) as index:
        assert index.vectors.meta.kind == "flat", "switching kinds is left to rebuild-index"
    assert any("call for hnsw" in r.getMessage() and "rebuild-index" in r.getMessage() for r in caplog.records)


def test_listing_filters_by_label_and_name(sample_settings: Settings, embedder: Embedder) -> None:
    with ImageIndex(sample_settings, embedder) as index:
        total, cats = index.list_images(0, 50, name="cat_")
        assert total == 4 and {i.filename for i in cats} == {
            "cat_crop.jpg",
            "cat_mirror.png",
            "cat_recompressed.jpg",
            "cat_grey.png",
        }
        total, espresso = index.list_images(0, 50, label="espresso")
        assert total == 1 and [i.filename for i in espresso] == ["coffee.jpg"]
        assert index.list_images(0, 50, label="espresso", name="cat") == (0, [])


def test_a_thumbnail_made_while_its_image_is_purged_does_not_stay_on_disk(
    sample_settings: Settings, embedder: CountingEmbedder
) -> None:
    with open_index(sample_settings, embedder) as index:
        info = index.resolve_ref("coffee.jpg")
        index.delete(info.id)  # in the trash: its thumbnail is still shown there
        read_blob = index.store.read_blob

        def read_then_purged(sha256: str) -> bytes:
            # The window made deterministic: the purge commits (and removes the thumbnail, none yet) after the
            # bytes were read and before the thumbnail is kept.
            data = read_blob(sha256)
            index.purge(info.id)
            return data

        index.store.read_blob = read_then_purged  # type: ignore[method-assign]
        with pytest.raises(UnknownReference):
            index.thumbnail(info.id)
        index.store.read_blob = read_blob  # type: ignore[method-assign]
        assert not index.thumbnails.path(info.sha256).exists()
        other = index.resolve_ref("rocket.jpg")
        index.thumbnail(other.id)  # an image that stays keeps its thumbnail
        assert index.thumbnails.path(other.sha256).exists()
