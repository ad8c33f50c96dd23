"""The metadata database by SQLAlchemy URL: SQLite in the data directory by default, or PostgreSQL.

The schema is kept by Alembic migrations (`index/storage/migrations`), for both: a new database is created by running
them, an existing one is brought up to date, and a SQLite file made before migrations existed is stamped
with the initial revision (its tables are exactly that revision's) and then upgraded. Nothing is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from index.errors import BackendUnavailable

log = logging.getLogger(__name__)

SQLITE_FILE = "imgsim.sqlite3"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
INITIAL_REVISION = "0001"
# The newest migration in `index/storage/migrations/versions` (a test checks the two agree): a database already there
# is opened without loading Alembic at all.
HEAD_REVISION = "0005"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / SQLITE_FILE}"


def create_store_engine(url: str) -> Engine:
    """An engine for `url`, checked by connecting once.

    Raises:
        BackendUnavailable: not a SQLAlchemy URL, not SQLite or PostgreSQL, or the server cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise BackendUnavailable(f"IMGSIM_DATABASE_URL is not a database URL: {url!r}") from exc
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise BackendUnavailable(
            f"unsupported database {parsed.get_backend_name()!r} in {parsed.render_as_string()}; "
            "use sqlite:///path or postgresql+psycopg://user:password@host/db"
        )
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            # pre_ping: a replica outlives database restarts and failovers without a failed request per stale
            # connection; connect_timeout turns an unreachable host into an error at start, not a hang.
            engine = create_engine(
                parsed, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"connect_timeout": 10}
            )
    except (NoSuchModuleError, ImportError) as exc:
        raise BackendUnavailable(f"no driver for {parsed.drivername!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return engine  # a file that is not a database fails in `migrate`, which names the file
    try:
        with engine.connect():
            pass
    except (OperationalError, DatabaseError) as exc:
        engine.dispose()
        raise BackendUnavailable(f"cannot connect to {parsed.render_as_string()}: {_first_line(exc.orig)}") from exc
    return engine


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else repr(exc)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; a database made before migrations is stamped first.

    Raises:
        DatabaseError: the database cannot be read or written (the caller names the file).
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait here and then find nothing to do.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7112026)")
        config.attributes["connection"] = conn
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "images" in tables:
            log.info("stamping a database made before migrations with revision %s", INITIAL_REVISION)
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The database's migration revision; None for a new database or one made before migrations.

    Raises:
        DatabaseError: the file or server is not a database this can read.
    """
    with engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
