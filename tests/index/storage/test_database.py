"""The metadata database by URL: migrations (new, up to date, and made before migrations), clear errors for
bad URLs, kept bytes behind an fsspec URL, and two replicas storing the same bytes at the same time."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from index.errors import BackendUnavailable
from index.model.exif import PhotoExif
from index.storage.blobs import FsspecBlobs
from index.storage.database import HEAD_REVISION, MIGRATIONS_DIR
from index.storage.schema import Base
from index.storage.store import ImageStore
from tests.app.server import running_server
from tests.conftest import IMAGES_DIR, fresh_postgres_database
from tests.index.storage.test_store import new_image

INITIAL_TABLES = {"images", "image_names", "image_labels", "meta"}
# What migration 0003 added, taken away again (SQLite and PostgreSQL alike).
UNDO_0003 = (
    "DROP TABLE duplicate_dismissal_members",
    "DROP TABLE duplicate_dismissals",
    "DROP INDEX ix_images_trashed_at",
    "ALTER TABLE images DROP COLUMN trashed_at",
    "ALTER TABLE image_names DROP COLUMN merged_from",
)
# What migration 0004 added; a database at 0002 has neither.
UNDO_0004 = ("DROP TABLE pair_verdicts",)
# What migration 0005 added: the EXIF columns.
EXIF_COLUMNS = ("taken_at", "camera_make", "camera_model", "lens", "latitude", "longitude")
UNDO_0005 = ("DROP INDEX ix_images_taken_at", *(f"ALTER TABLE images DROP COLUMN {c}" for c in EXIF_COLUMNS))
UNDO_SINCE_0002 = UNDO_0005 + UNDO_0004 + UNDO_0003


def alembic_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar())
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_new_database_gets_every_table_from_the_migrations(tmp_path: Path, kind: str) -> None:
    url = fresh_postgres_database() if kind == "postgresql" else None
    store = ImageStore(tmp_path / "data", url)
    try:
        tables = set(inspect(store.engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"} <= tables
        assert alembic_version(str(store.engine.url.render_as_string(hide_password=False))) == HEAD_REVISION
        store.insert([new_image(1)], "m", "w")
        assert store.count() == 1
    finally:
        store.close()


def test_a_sqlite_database_made_before_migrations_is_stamped_and_keeps_its_rows(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db_path = data_dir / "imgsim.sqlite3"
    # The schema as the store created it before migrations existed: revision 0001's tables.
    legacy = create_engine(f"sqlite:///{db_path}")
    Base.metadata.create_all(legacy, tables=[t for t in Base.metadata.sorted_tables if t.name in INITIAL_TABLES])
    with legacy.begin() as conn:  # the columns later revisions added to those tables
        for statement in UNDO_0005 + UNDO_0003[2:]:
            conn.exec_driver_sql(statement)
    legacy.dispose()
    store = ImageStore(data_dir)
    image_id = store.insert([new_image(1, "kept.png")], "m", "w")[f"{1:064x}"][0]
    store.close()
    db = sqlite3.connect(db_path)
    db.execute("DELETE FROM alembic_version")  # as if it had never been stamped, nor migrated past 0001
    db.commit()
    db.execute("DROP TABLE alembic_version")
    db.execute("DROP TABLE seen_files")
    for statement in UNDO_SINCE_0002:
        db.execute(statement)
    db.close()

    reopened = ImageStore(data_dir)
    try:
        info = reopened.get(image_id)
        assert info is not None and info.names == ["kept.png"]
        assert alembic_version(f"sqlite:///{db_path}") == HEAD_REVISION
    finally:
        reopened.close()


def test_the_newest_revision_the_store_knows_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_database_at_revision_0001_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = ImageStore(data_dir)
    image_id = store.insert([new_image(1, "kept.png")], "m", "w")[f"{1:064x}"][0]
    store.close()
    db = sqlite3.connect(data_dir / "imgsim.sqlite3")
    for statement in UNDO_SINCE_0002:
        db.execute(statement)
    db.execute("DROP TABLE seen_files")
    db.execute("DROP INDEX ix_images_id")
    db.execute("UPDATE alembic_version SET version_num = '0001'")
    db.commit()
    db.close()

    reopened = ImageStore(data_dir)
    try:
        tables = set(inspect(reopened.engine).get_table_names())
        assert "seen_files" in tables
        assert "ix_images_id" in {i["name"] for i in inspect(reopened.engine).get_indexes("images")}
        assert alembic_version(f"sqlite:///{data_dir / 'imgsim.sqlite3'}") == HEAD_REVISION
        info = reopened.get(image_id)
        assert info is not None and info.names == ["kept.png"]
    finally:
        reopened.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_at_revision_0002_gains_the_trash_and_decisions_and_keeps_its_rows(
    tmp_path: Path, kind: str
) -> None:
    data_dir = tmp_path / "data"
    url = fresh_postgres_database() if kind == "postgresql" else None
    store = ImageStore(data_dir, url)
    image_id = store.insert([new_image(1, "kept.png", "/photos/kept.png")], "m", "w")[f"{1:064x}"][0]
    engine = store.engine
    with engine.begin() as conn:  # back to 0002's tables, as a database made before 0003 has them
        for statement in UNDO_SINCE_0002:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0002'")
    rendered = engine.url.render_as_string(hide_password=False)
    store.close()
    assert alembic_version(rendered) == "0002"

    reopened = ImageStore(data_dir, url)
    try:
        assert alembic_version(rendered) == HEAD_REVISION
        columns = {c["name"] for c in inspect(reopened.engine).get_columns("images")}
        assert "trashed_at" in columns
        assert "pair_verdicts" in set(inspect(reopened.engine).get_table_names())
        assert "ix_images_trashed_at" in {i["name"] for i in inspect(reopened.engine).get_indexes("images")}
        info = reopened.get(image_id)
        assert info is not None and info.trashed_at is None
        assert (info.names, info.paths) == (["kept.png"], ["/photos/kept.png"])
        reopened.move_to_trash(image_id)
        assert reopened.count() == 0 and reopened.trashed_ids() == [image_id]
        assert reopened.add_dismissal([f"{1:064x}", f"{2:064x}"]).id == 1
    finally:
        reopened.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_at_revision_0004_gains_the_exif_columns_and_keeps_its_rows(tmp_path: Path, kind: str) -> None:
    data_dir = tmp_path / "data"
    url = fresh_postgres_database() if kind == "postgresql" else None
    store = ImageStore(data_dir, url)
    image_id = store.insert([new_image(1, "kept.png")], "m", "w")[f"{1:064x}"][0]
    engine = store.engine
    with engine.begin() as conn:
        for statement in UNDO_0005:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004'")
    rendered = engine.url.render_as_string(hide_password=False)
    store.close()

    reopened = ImageStore(data_dir, url)
    try:
        assert alembic_version(rendered) == HEAD_REVISION
        assert set(EXIF_COLUMNS) <= {c["name"] for c in inspect(reopened.engine).get_columns("images")}
        info = reopened.get(image_id)
        assert info is not None and info.names == ["kept.png"]
        assert (info.taken_at, info.camera_model, info.latitude) == (None, None, None)
        taken = PhotoExif(datetime(2024, 5, 1, 12, 30), "Apple", "iPhone 15 Pro", "back camera", 48.858, -2.29)
        new_id = reopened.insert([replace(new_image(2, "new.heic"), exif=taken)], "m", "w")[f"{2:064x}"][0]
        stored = reopened.get(new_id)
        assert stored is not None
        assert (stored.taken_at, stored.camera_make, stored.camera_model) == (taken.taken_at, "Apple", "iPhone 15 Pro")
        assert (stored.lens, stored.latitude, stored.longitude) == ("back camera", 48.858, -2.29)
    finally:
        reopened.close()


def test_a_database_already_up_to_date_is_opened_without_loading_alembic(tmp_path: Path) -> None:
    ImageStore(tmp_path / "data").close()
    script = (
        "import sys; from pathlib import Path; from index.storage.store import ImageStore; "
        f"ImageStore(Path({str(tmp_path / 'data')!r})).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "not a database URL"),
        ("mysql+pymysql://u:p@db.example/imgsim", "unsupported database 'mysql'"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/imgsim", "cannot connect to postgresql"),
    ],
)
def test_a_database_url_that_cannot_be_used_is_one_clear_error(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(BackendUnavailable, match=says):
        ImageStore(tmp_path / "data", url)


def test_kept_bytes_go_to_the_fsspec_url_in_the_same_layout(tmp_path: Path) -> None:
    shared = tmp_path / "shared-blobs"
    store = ImageStore(tmp_path / "data", blob_url=f"file://{shared}")
    sha = f"{7:064x}"
    try:
        store.write_blobs([(sha, b"original bytes"), (f"{8:064x}", b"other")])
        assert (shared / sha[:2] / sha).read_bytes() == b"original bytes"
        assert store.read_blob(sha) == b"original bytes"
        assert not (tmp_path / "data" / "blobs").exists()
        store.blobs.delete(sha)
        with pytest.raises(FileNotFoundError):
            store.read_blob(sha)
        assert [p.name for p in shared.rglob("*") if p.is_file()] == [f"{8:064x}"]
    finally:
        store.close()


def test_a_blob_url_of_an_unknown_kind_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="IMGSIM_BLOB_URL 'nosuch://bucket/x'"):
        FsspecBlobs("nosuch://bucket/x")


@pytest.mark.slow
def test_two_replicas_storing_the_same_bytes_at_once_make_one_row(tmp_path: Path) -> None:
    """Two real API processes on one PostgreSQL database and one blob storage, the same uploads at once."""
    env = {"IMGSIM_DATABASE_URL": fresh_postgres_database(), "IMGSIM_BLOB_URL": f"file://{tmp_path / 'blobs'}"}
    names = sorted(p.name for p in IMAGES_DIR.iterdir() if p.suffix in {".jpg", ".png"})
    files = [("files", (name, (IMAGES_DIR / name).read_bytes())) for name in names]
    with (
        running_server(tmp_path / "a", tmp_path / "a.log", **env) as first,
        running_server(tmp_path / "b", tmp_path / "b.log", **env) as second,
    ):
        barrier = threading.Barrier(4)
        answers: list[httpx.Response] = []

        def upload(url: str) -> None:
            barrier.wait()
            answers.append(httpx.post(f"{url}/ingest", files=files, timeout=300))

        threads = [threading.Thread(target=upload, args=(url,)) for url in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
        ids = [{r["filename"]: r["id"] for r in a.json()["results"]} for a in answers]
        assert all(i == ids[0] for i in ids)  # every replica names the same row for the same bytes
        statuses = [r["status"] for a in answers for r in a.json()["results"]]
        unique = len(set(ids[0].values()))
        assert statuses.count("added") == unique
        for url in (first, second):
            listing = httpx.get(f"{url}/images", params={"limit": 1000}).json()
            assert listing["total"] == unique
        # Bytes one replica kept, the other serves.
        some_id = next(iter(ids[0].values()))
        assert httpx.get(f"{second}/images/{some_id}/content").status_code == 200


@pytest.mark.slow
def test_a_server_with_an_unreachable_database_stops_at_start_saying_why(tmp_path: Path) -> None:
    env = {"IMGSIM_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/imgsim"}
    with (
        pytest.raises(RuntimeError, match=r"\nerror: cannot connect to postgresql\+psycopg://nobody@") as failed,
        running_server(tmp_path / "data", tmp_path / "server.log", **env),
    ):
        pass
    assert "Traceback" not in str(failed.value)
