"""The store: rows per content, names, blobs, meta, deletion; on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.errors import InvalidArgument
from index.model.registry import Prediction
from index.storage.store import ImageStore, NewImage
from tests.conftest import fresh_postgres_database, unit_vectors

DIM = 16


def new_image(n: int, name: str | None = None, path: str = "") -> NewImage:
    return NewImage(
        sha256=f"{n:064x}",
        byte_size=100 + n,
        width=10 + n,
        height=20 + n,
        format="PNG",
        predictions=[Prediction("tabby, tabby cat", 281, 0.75), Prediction("tiger cat", 282, 0.2)],
        embedding=unit_vectors(1, DIM, seed=n)[0],
        name=name or f"image{n}.png",
        path=path,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None: SQLite in the data directory; otherwise a fresh PostgreSQL database."""
    return fresh_postgres_database() if request.param == "postgresql" else None


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> ImageStore:
    return ImageStore(tmp_path / "data", database_url)


def test_inserted_images_persist_after_reopening(tmp_path: Path, database_url: str | None) -> None:
    store = ImageStore(tmp_path / "data", database_url)
    inserted = store.insert([new_image(1, path="/photos/image1.png"), new_image(2)], "m:mean", "w" * 64)
    store.set_meta({"model": "m:mean", "dim": str(DIM)})
    store.close()

    reopened = ImageStore(tmp_path / "data", database_url)
    assert reopened.count() == 2
    info = reopened.get(inserted[f"{1:064x}"][0])
    assert info is not None
    assert (info.names, info.paths, info.byte_size, info.width, info.height) == (
        ["image1.png"],
        ["/photos/image1.png"],
        101,
        11,
        21,
    )
    assert info.predictions[0] == Prediction("tabby, tabby cat", 281, 0.75)
    assert info.model == "m:mean"
    assert reopened.get_meta("model") == "m:mean"
    np.testing.assert_array_equal(reopened.embeddings([info.id], DIM)[0], new_image(1).embedding)


def test_same_content_under_another_name_is_one_row_with_two_names(store: ImageStore) -> None:
    (first_id, added) = store.insert([new_image(1, "a.png")], "m", "w")[f"{1:064x}"]
    (again_id, added_again) = store.insert([new_image(1, "b.png")], "m", "w")[f"{1:064x}"]
    assert (added, added_again) == (True, False)
    assert again_id == first_id
    assert store.count() == 1
    info = store.get(first_id)
    assert info is not None and info.names == ["a.png", "b.png"]


def test_same_name_seen_twice_is_recorded_once(store: ImageStore) -> None:
    image_id = store.insert([new_image(1, "a.png", "/x/a.png")], "m", "w")[f"{1:064x}"][0]
    store.add_names([(image_id, "a.png", "/x/a.png"), (image_id, "a.png", "/x/a.png")])
    info = store.get(image_id)
    assert info is not None and (info.names, info.paths) == (["a.png"], ["/x/a.png"])


def test_delete_removes_row_names_labels_and_blob(store: ImageStore) -> None:
    image_id = store.insert([new_image(1)], "m", "w")[f"{1:064x}"][0]
    store.write_blob(f"{1:064x}", b"original bytes")
    assert store.read_blob(f"{1:064x}") == b"original bytes"
    deleted = store.delete(image_id)
    assert deleted is not None and deleted.id == image_id
    assert store.get(image_id) is None
    assert store.ids_by_name("image1.png") == []
    assert len(store.ids_with_labels([281])) == 0
    assert not store.blob_path(f"{1:064x}").exists()
    assert store.delete(image_id) is None


def test_a_deleted_id_is_never_handed_out_again(store: ImageStore, database_url: str | None) -> None:
    ids = [store.insert([new_image(n)], "m", "w")[f"{n:064x}"][0] for n in (1, 2)]
    store.delete(ids[1])
    store.close()
    reopened = ImageStore(store.data_dir, database_url)
    new_id = reopened.insert([new_image(3)], "m", "w")[f"{3:064x}"][0]
    assert new_id > ids[1]


def test_labels_find_images_by_predicted_class(store: ImageStore) -> None:
    image_id = store.insert([new_image(1)], "m", "w")[f"{1:064x}"][0]
    assert store.ids_with_labels([282]).tolist() == [image_id]
    assert store.ids_with_labels([999]).tolist() == []


def test_embeddings_come_back_in_the_requested_order_and_missing_ids_raise(store: ImageStore) -> None:
    inserted = store.insert([new_image(n) for n in range(1, 6)], "m", "w")
    ids = [inserted[f"{n:064x}"][0] for n in (4, 1, 3)]
    got = store.embeddings(ids, DIM)
    for row, n in zip(got, (4, 1, 3), strict=True):
        np.testing.assert_array_equal(row, new_image(n).embedding)
    with pytest.raises(KeyError):
        store.embeddings([*ids, 999], DIM)


def test_iterating_embeddings_yields_every_row_once_in_id_order(store: ImageStore) -> None:
    store.insert([new_image(n) for n in range(1, 26)], "m", "w")
    batches = list(store.iter_embeddings(batch=10))
    assert [len(ids) for ids, _ in batches] == [10, 10, 5]
    all_ids = np.concatenate([ids for ids, _ in batches])
    np.testing.assert_array_equal(all_ids, store.ids())
    assert all(v.shape[1] == DIM for _, v in batches)


def test_sqlite_database_uses_wal_and_enforces_foreign_keys(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "data")
    store.insert([new_image(1)], "m", "w")
    db = sqlite3.connect(store.data_dir / "imgsim.sqlite3")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_update_embeddings_replaces_vectors_predictions_and_meta_together(store: ImageStore) -> None:
    image_id = store.insert([new_image(1)], "m", "w")[f"{1:064x}"][0]
    replacement = unit_vectors(1, DIM, seed=99)[0]
    store.update_embeddings(
        [(image_id, replacement, [Prediction("espresso", 967, 0.9)])], "other:mean", "v", {"model": "other:mean"}
    )
    info = store.get(image_id)
    assert info is not None and info.model == "other:mean"
    assert [p.class_index for p in info.predictions] == [967]
    assert store.ids_with_labels([281]).tolist() == []
    assert store.get_meta("model") == "other:mean"
    np.testing.assert_array_equal(store.embeddings([image_id], DIM)[0], replacement)


def test_a_data_dir_that_is_a_file_raises_invalid_argument(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a folder")
    with pytest.raises(InvalidArgument, match="data directory"):
        ImageStore(tmp_path / "data")


def test_a_database_file_that_is_not_sqlite_raises_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "imgsim.sqlite3"
    db.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(InvalidArgument, match="not a usable imgsim database"):
        ImageStore(tmp_path / "data")
    assert db.read_bytes() == b"definitely not sqlite" * 100


def labelled_image(n: int, name: str, class_index: int) -> NewImage:
    return NewImage(
        sha256=f"{n:064x}",
        byte_size=1,
        width=1,
        height=1,
        format="PNG",
        predictions=[Prediction(f"class {class_index}", class_index, 0.9)],
        embedding=unit_vectors(1, DIM, seed=n)[0],
        name=name,
    )


def test_listing_filters_by_predicted_class_and_by_part_of_a_name(store: ImageStore) -> None:
    store.insert(
        [
            labelled_image(1, "Cat_one.jpg", 281),
            labelled_image(2, "dog.jpg", 207),
            labelled_image(3, "cat_two.png", 281),
            labelled_image(4, "100%_cat.png", 207),
        ],
        "m",
        "w" * 64,
    )
    assert [i.names for i in store.list_images(0, 10, classes={281})] == [["Cat_one.jpg"], ["cat_two.png"]]
    assert store.count_images(classes={281}) == 2
    assert [i.names[0] for i in store.list_images(0, 10, name="CAT")] == ["Cat_one.jpg", "cat_two.png", "100%_cat.png"]
    assert [i.names[0] for i in store.list_images(0, 10, classes={207}, name="cat")] == ["100%_cat.png"]
    assert store.count_images(classes={207}, name="cat") == 1
    # LIKE wildcards in the name are taken literally
    assert [i.names[0] for i in store.list_images(0, 10, name="%_")] == ["100%_cat.png"]
    assert [i.names[0] for i in store.list_images(1, 1, name="cat")] == ["cat_two.png"]
    assert store.count_images(name="nothing") == 0 and store.list_images(0, 10, name="nothing") == []
