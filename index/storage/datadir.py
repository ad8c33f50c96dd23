"""Keeping a data directory honest: refuse a database that lost its images, clean up temporary files left by
earlier crashes, and turn a full or failing disk into one `StorageError`."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import OperationalError

from index.errors import DataDirDamaged, StorageError

log = logging.getLogger(__name__)

DB_FILE = "imgsim.sqlite3"
# Errors of the disk rather than of the request: full, over quota, failing or read-only.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})
# SQLite's messages for the same conditions (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN).
_SQLITE_STORAGE = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database")


def is_storage_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _STORAGE_ERRNOS
    if isinstance(exc, OperationalError):
        return any(text in str(exc.orig).lower() for text in _SQLITE_STORAGE)
    return False


def storage_message(exc: BaseException, action: str) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif isinstance(exc, OperationalError):
        why = str(exc.orig)
    else:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot {action}: {why}; nothing was half-written, searches still work"


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Re-raise disk-full and I/O failures as `StorageError` (other errors pass through unchanged).

    Raises:
        StorageError.
    """
    try:
        yield
    except (OSError, OperationalError) as exc:
        if is_storage_error(exc):
            raise StorageError(storage_message(exc, action)) from exc
        raise


def check_database_present(data_dir: Path, index_file: str = "vectors.faiss") -> None:
    """Refuse a data directory whose database is missing or empty while images or vectors are kept.

    SQLite would otherwise create a fresh, empty database over it: the service would then serve an empty
    index, drop every vector and hand out id 1 again for a different image.

    Raises:
        DataDirDamaged.
    """
    db = data_dir / DB_FILE
    if db.exists() and db.stat().st_size > 0:
        return
    blobs = data_dir / "blobs"
    kept = 0
    if blobs.is_dir():
        kept = sum(1 for p in blobs.glob("*/*") if p.is_file() and not p.name.startswith("."))
    vectors = data_dir / index_file
    has_vectors = vectors.exists() and vectors.stat().st_size > 0
    if not kept and not has_vectors:
        return
    state = "empty (0 bytes)" if db.exists() else "missing"
    held = [f"{kept} kept image{'' if kept == 1 else 's'} in {blobs}"] if kept else []
    held += [f"the vector file {vectors}"] if has_vectors else []
    raise DataDirDamaged(
        f"refusing to start: the database {db} is {state} but the data directory holds {' and '.join(held)}; "
        f"restore {DB_FILE} from a backup, or move {data_dir} aside to start a new index"
    )


def remove_temporary_files(data_dir: Path) -> int:
    """Delete temporary files left by interrupted writes (blobs and vector-index saves); returns how many.

    Only called by the process that holds the data directory's lock, so no live writer owns them.
    """
    candidates = [*data_dir.glob(".*.tmp"), *data_dir.glob("blobs/*/.*.tmp")]
    removed = 0
    for path in candidates:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove temporary file %s: %s", path, exc)
    if removed:
        log.warning("removed %d temporary files left by interrupted writes in %s", removed, data_dir)
    return removed
