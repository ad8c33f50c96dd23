"""The store: rows per content, names, blobs, meta, deletion; on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.errors import ImageInTrash, InvalidArgument, NotInTrash, UnknownReference
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


# --- the trash and "not duplicates" decisions -------------------------------------------------------------


def sha(n: int) -> str:
    return f"{n:064x}"


def stored(store: ImageStore, *images: NewImage) -> list[int]:
    inserted = store.insert(list(images), "m", "w")
    for image in images:
        store.write_blob(image.sha256, f"bytes of {image.name}".encode())
    return [inserted[i.sha256][0] for i in images]


def test_a_trashed_image_is_hidden_from_counts_and_listings_but_kept_whole(store: ImageStore) -> None:
    first, second = stored(store, new_image(1, "cat.png", "/p/cat.png"), new_image(2, "dog.png"))
    trashed = store.move_to_trash(first)
    assert trashed.trashed_at is not None and trashed.names == ["cat.png"]
    assert (store.count(), store.ids().tolist(), store.count_images()) == (1, [second], 1)
    assert [i.id for i in store.list_images(0, 10)] == [second]
    assert store.count_images(name="cat") == 0 and store.count_images(classes={281}) == 1
    assert [ids.tolist() for ids, _ in store.iter_embeddings()] == [[second]]
    # Kept whole: the row, its names, paths, labels, embedding and bytes.
    info = store.get(first)
    assert info is not None and info.trashed_at == trashed.trashed_at and info.paths == ["/p/cat.png"]
    assert store.ids_with_labels([281]).tolist() == [first, second]
    np.testing.assert_array_equal(store.embeddings([first], DIM)[0], new_image(1).embedding)
    assert store.read_blob(sha(1)) == b"bytes of cat.png"
    assert (store.live_among([first, second, 99]), store.trashed_among([first, second, 99])) == ([second], [first])
    with pytest.raises(ImageInTrash, match=r"cat\.png"):
        store.move_to_trash(first)


def test_restoring_brings_an_image_back_under_its_id(store: ImageStore) -> None:
    (image_id,) = stored(store, new_image(1))
    store.move_to_trash(image_id)
    restored = store.restore(image_id)
    assert restored.id == image_id and restored.trashed_at is None
    assert store.ids().tolist() == [image_id] and store.count_trash() == 0
    with pytest.raises(NotInTrash):
        store.restore(image_id)
    with pytest.raises(UnknownReference):
        store.restore(999)
    store.move_to_trash(image_id)
    assert store.restore_many([image_id, 999]) == [image_id] and store.restore_many([image_id]) == []


def test_purging_deletes_row_names_labels_and_bytes_of_a_trashed_image_only(store: ImageStore) -> None:
    first, second = stored(store, new_image(1), new_image(2))
    with pytest.raises(NotInTrash, match="not in the trash"):
        store.purge(second)
    assert store.get(second) is not None and store.read_blob(sha(2)) == b"bytes of image2.png"
    store.move_to_trash(first)
    purged = store.purge(first)
    assert purged.id == first and store.get(first) is None
    assert store.ids_by_name("image1.png") == [] and store.ids_with_labels([281]).tolist() == [second]
    with pytest.raises(FileNotFoundError):
        store.read_blob(sha(1))
    with pytest.raises(UnknownReference):
        store.purge(first)


def test_the_trash_lists_the_most_recently_trashed_first(store: ImageStore) -> None:
    ids = stored(store, *(new_image(n) for n in range(1, 5)))
    for image_id in (ids[2], ids[0], ids[3]):
        store.move_to_trash(image_id)
    assert store.count_trash() == 3
    assert [i.id for i in store.list_trash(0, 10)] == [ids[3], ids[0], ids[2]]
    assert [i.id for i in store.list_trash(1, 1)] == [ids[0]]
    newest = store.get(ids[3])
    assert newest is not None and newest.trashed_at is not None
    assert store.trashed_ids() == sorted([ids[0], ids[2], ids[3]])
    assert store.trashed_ids(before=newest.trashed_at) == sorted([ids[0], ids[2]])


def test_resolving_a_group_trashes_the_copies_and_records_their_names_on_the_kept_image(store: ImageStore) -> None:
    keep, copy, _other = stored(
        store, new_image(1, "IMG_1.jpg", "/a/IMG_1.jpg"), new_image(2, "copy.jpg", "/b/copy.jpg"), new_image(3)
    )
    store.add_names([(copy, "copy again.jpg", "/c/copy again.jpg")])
    kept, trashed = store.resolve_duplicates(keep, [copy])
    assert [t.id for t in trashed] == [copy] and trashed[0].trashed_at is not None
    # The kept image's own names are unchanged; the copy's files are recorded beside them.
    assert (kept.names, kept.paths) == (["IMG_1.jpg"], ["/a/IMG_1.jpg"])
    assert {(r.name, r.path, r.sha256) for r in kept.replaced} == {
        ("copy.jpg", "/b/copy.jpg", sha(2)),
        ("copy again.jpg", "/c/copy again.jpg", sha(2)),
    }
    assert sorted(store.ids_by_name("copy.jpg")) == [keep, copy]
    assert [i.id for i in store.list_images(0, 10, name="copy")] == [keep]
    # They stay recorded when the copy is purged.
    store.purge(copy)
    again = store.get(keep)
    assert again is not None and len(again.replaced) == 2


@pytest.mark.parametrize(
    ("keep", "remove", "error"),
    [
        (1, [], InvalidArgument),
        (1, [2, 2], InvalidArgument),
        (1, [1, 2], InvalidArgument),
        (1, [2, 999], UnknownReference),
        (999, [2], UnknownReference),
        (1, [3], ImageInTrash),
    ],
)
def test_resolving_with_bad_ids_changes_nothing(
    store: ImageStore, keep: int, remove: list[int], error: type[Exception]
) -> None:
    ids = stored(store, new_image(1), new_image(2), new_image(3))
    assert ids == [1, 2, 3]
    store.move_to_trash(3)
    with pytest.raises(error):
        store.resolve_duplicates(keep, remove)
    assert store.ids().tolist() == [1, 2] and store.trashed_ids() == [3]
    assert all(not i.replaced for i in store.get_many([1, 2, 3]).values())


def test_dismissals_are_kept_by_content_newest_first_and_can_be_undone(
    tmp_path: Path, database_url: str | None
) -> None:
    store = ImageStore(tmp_path / "data", database_url)
    a, b, _c = stored(store, new_image(1), new_image(2), new_image(3))
    first = store.add_dismissal([sha(1), sha(2)])
    second = store.add_dismissal([sha(3), sha(1), sha(3)])
    assert (first.sha256s, second.sha256s) == ([sha(1), sha(2)], [sha(1), sha(3)])
    assert second.id > first.id and first.created_at.tzinfo is not None
    assert sorted(store.dismissed_images()) == [(first.id, a), (first.id, b), (second.id, a), (second.id, 3)]
    store.close()

    reopened = ImageStore(tmp_path / "data", database_url)
    assert [d.id for d in reopened.dismissals(0, 10)] == [second.id, first.id] and reopened.count_dismissals() == 2
    assert reopened.delete_dismissal(second.id) == second
    assert reopened.delete_dismissal(second.id) is None
    assert [d.id for d in reopened.dismissals(0, 10)] == [first.id]
    # Purged, then stored again under a new id: the decision, by content, names the new row.
    reopened.move_to_trash(b)
    reopened.purge(b)
    assert sorted(reopened.dismissed_images()) == [(first.id, a)]
    (again,) = stored(reopened, new_image(2))
    assert sorted(reopened.dismissed_images()) == [(first.id, a), (first.id, again)]
    # An undone decision's id is never handed out again.
    assert reopened.add_dismissal([sha(1), sha(3)]).id > second.id
    reopened.close()


def test_an_image_and_its_vector_are_read_together_as_get_and_embeddings_give_them(store: ImageStore) -> None:
    images = [new_image(1, path="/photos/a.png"), new_image(2)]
    ids = [i for i, _ in store.insert(images, "m", "h").values()]
    store.add_names([(ids[0], "b.png", "/photos/b.png")])
    found = store.get_with_embedding(ids[0], DIM)
    assert found is not None
    info, vector = found
    assert info == store.get(ids[0]) and info.names == ["image1.png", "b.png"]
    np.testing.assert_array_equal(vector, store.embeddings([ids[0]], DIM)[0])
    assert store.get_with_embedding(10_000, DIM) is None
    with pytest.raises(ValueError, match="not 7"):
        store.get_with_embedding(ids[1], 7)


def test_reads_of_more_ids_than_one_statement_binds_return_them_all(store: ImageStore) -> None:
    images = [new_image(n) for n in range(1, 1001)]
    ids = sorted(i for i, _ in store.insert(images, "m", "h").values())
    asked = [*ids, 10_000]
    assert sorted(store.get_many(asked)) == ids
    assert store.embeddings(ids, DIM).shape == (1000, DIM)


def test_an_id_past_32_bits_is_not_stored_rather_than_an_error(store: ImageStore) -> None:
    ((image_id, _),) = store.insert([new_image(1)], "m", "h").values()
    big = 3_000_000_000  # a client's own number: PostgreSQL's id column is 32 bits
    assert store.get(big) is None and store.get_with_embedding(big, DIM) is None
    assert list(store.get_many([image_id, big, 2**62])) == [image_id]
    with pytest.raises(KeyError, match="not stored"):
        store.embeddings([big], DIM)


def test_calls_within_reading_share_one_connection(store: ImageStore) -> None:
    from sqlalchemy import event

    ((image_id, _),) = store.insert([new_image(1)], "m", "h").values()
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *args: checkouts.append(args))
    with store.reading():
        assert store.get(image_id) is not None
        assert store.get_many([image_id])[image_id].sha256 == f"{1:064x}"
        store.embeddings([image_id], DIM)
    assert len(checkouts) == 1
    store.get(image_id)
    store.get(image_id)
    assert len(checkouts) == 3  # outside it, one per call


def test_images_read_by_id_carry_the_same_names_as_the_image_rows_read_whole(store: ImageStore) -> None:
    from sqlalchemy import event

    keep, copy, plain = stored(store, new_image(1, "z.jpg", "/a/z.jpg"), new_image(2, "copy.jpg"), new_image(3))
    store.add_names([(keep, "a.jpg", "/b/a.jpg"), (keep, "m.jpg", ""), (copy, "copy 2.jpg", "/c/copy 2.jpg")])
    store.resolve_duplicates(keep, [copy])
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    by_id = store.get_many([keep, copy, plain])
    assert len(statements) == 1  # names come with their rows
    for info in by_id.values():
        assert info == store.find_by_sha(info.sha256)  # the ORM row and its names relationship
    assert by_id[keep].names == ["z.jpg", "a.jpg", "m.jpg"] and by_id[keep].paths == ["/a/z.jpg", "/b/a.jpg"]
    assert [r.name for r in by_id[keep].replaced] == ["copy.jpg", "copy 2.jpg"]


def test_a_search_waiting_between_its_reads_holds_no_transaction_open(
    store: ImageStore, database_url: str | None
) -> None:
    """On PostgreSQL: a search waiting on the vector server or on a verification is not 'idle in transaction'
    (which holds back vacuum, and which idle_in_transaction_session_timeout ends)."""
    if database_url is None:
        pytest.skip("SQLite reads begin no transaction")
    from sqlalchemy import create_engine, text

    ((image_id, _),) = store.insert([new_image(1)], "m", "h").values()
    watcher = create_engine(database_url)
    try:
        with store.reading():
            assert store.get(image_id) is not None
            held = store._held()
            assert held is not None
            backend = held.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with watcher.connect() as conn:
                query = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")
                state = conn.execute(query, {"pid": backend}).scalar_one()
            assert store.get_many([image_id])[image_id].id == image_id
        assert state == "idle"
    finally:
        watcher.dispose()
