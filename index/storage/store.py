"""The metadata store: the source of truth for every image, its names, predictions and embedding (the tables
are in `index.storage.schema`), and the kept image bytes."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, defer, selectinload, sessionmaker

from index.errors import BackendUnavailable, InvalidArgument
from index.model.registry import Prediction
from index.storage import blobs as blob_storage
from index.storage.database import SQLITE_FILE, create_store_engine, migrate, sqlite_url
from index.storage.datadir import check_database_present
from index.storage.permissions import create_private, make_private_dir
from index.storage.schema import ImageRow, LabelRow, MetaRow, NameRow, SeenFileRow
from index.storage.seen_files import FileStat


@dataclass(frozen=True)
class NewImage:
    """Everything needed to insert one image."""

    sha256: str
    byte_size: int
    width: int
    height: int
    format: str
    predictions: list[Prediction]
    embedding: NDArray[np.float32]
    name: str
    path: str = ""


@dataclass(frozen=True)
class ImageInfo:
    """A stored image as callers see it (no embedding)."""

    id: int
    sha256: str
    names: list[str]
    paths: list[str]
    byte_size: int
    width: int
    height: int
    format: str
    model: str
    predictions: list[Prediction]
    created_at: datetime

    @property
    def filename(self) -> str:
        return self.names[0] if self.names else ""


def _predictions_to_json(preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "class_index": p.class_index, "score": round(p.score, 6)} for p in preds]


def _predictions_from_json(raw: list[dict[str, Any]]) -> list[Prediction]:
    return [Prediction(str(p["label"]), int(p["class_index"]), float(p["score"])) for p in raw]


def _info(row: ImageRow) -> ImageInfo:
    return ImageInfo(
        id=row.id,
        sha256=row.sha256,
        names=list(dict.fromkeys(n.name for n in row.names)),
        paths=[n.path for n in row.names if n.path],
        byte_size=row.byte_size,
        width=row.width,
        height=row.height,
        format=row.format,
        model=row.model,
        predictions=_predictions_from_json(row.predictions),
        # SQLite keeps no time zone; the store always writes UTC.
        created_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
    )


def _filtered(
    query: Select[Any], classes: Iterable[int] | None, name: str | None, *, ilike: bool = False
) -> Select[Any]:
    # Semi-joins: the label filter goes through the class_index index; a substring of a name cannot use an
    # index, so the narrow name index is scanned (tests/benchmarks/web_library.py measures both at 100k).
    if classes is not None:
        labelled = select(LabelRow.image_id).where(LabelRow.class_index.in_(sorted(set(classes))))
        query = query.where(ImageRow.id.in_(labelled))
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # SQLite's LIKE ignores case (ASCII letters) by itself; lower() on every name would cost 2-3x more.
        # PostgreSQL's LIKE is case-sensitive: ILIKE there (`ilike`).
        like = NameRow.name.ilike if ilike else NameRow.name.like
        named = select(NameRow.image_id).where(like(f"%{escaped}%", escape="\\"))
        query = query.where(ImageRow.id.in_(named))
    return query


class ImageStore:
    """The metadata database through SQLAlchemy 2 (SQLite in WAL mode by default, or PostgreSQL), plus
    content-addressed blobs (a local directory by default, or any fsspec URL)."""

    def __init__(self, data_dir: Path, database_url: str | None = None, blob_url: str | None = None) -> None:
        """Open (creating when needed) the store in `data_dir`, or in the database and blob storage named.

        Raises:
            InvalidArgument: `data_dir` cannot be a directory, or its database file is not a SQLite database.
            DataDirDamaged: the database is empty or missing although images are kept.
            BackendUnavailable: `database_url` or `blob_url` cannot be used.
        """
        self.data_dir = data_dir
        try:
            make_private_dir(data_dir)
        except OSError as exc:
            raise InvalidArgument(f"cannot use {data_dir} as the data directory: {exc.strerror or exc}") from exc
        self.blob_dir = data_dir / "blobs"
        if database_url is None:
            check_database_present(data_dir)
            create_private(data_dir / SQLITE_FILE)
        self.blobs = blob_storage.open_blobs(data_dir, blob_url)
        url = database_url or sqlite_url(data_dir)
        self.engine = create_store_engine(url)
        try:
            migrate(self.engine)
        except DatabaseError as exc:
            self.engine.dispose()
            if database_url:
                raise BackendUnavailable(f"{self.engine.url!r} is not a usable imgsim database: {exc.orig}") from exc
            raise InvalidArgument(f"{data_dir / 'imgsim.sqlite3'} is not a usable imgsim database: {exc.orig}") from exc
        # ON CONFLICT clauses are dialect-specific: concurrent writers (replicas) insert the same content once.
        # The dialect module is imported here: each costs tens of milliseconds of start-up.
        dialect = importlib.import_module(f"sqlalchemy.dialects.{self.engine.dialect.name}")
        self._insert: Callable[..., Any] = dialect.insert
        self._ilike = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- meta -------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(MetaRow, key)
            return row.value if row else None

    def set_meta(self, values: dict[str, str]) -> None:
        with self.session() as s:
            for key, value in values.items():
                stmt = self._insert(MetaRow).values(key=key, value=value)
                s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    # --- blobs ------------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blobs.exists(sha256)

    def delete_blob(self, sha256: str) -> None:
        self.blobs.delete(sha256)

    def write_blob(self, sha256: str, data: bytes) -> None:
        """Keep the original bytes, content-addressed, so everything can be re-embedded later."""
        self.blobs.write(sha256, data)

    def write_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """`write_blob` for many images at once."""
        blob_storage.write_many(self.blobs, blobs)

    def read_blob(self, sha256: str) -> bytes:
        """Raises: FileNotFoundError: the bytes are not kept."""
        return self.blobs.read(sha256)

    # --- images -----------------------------------------------------------------------------------------

    def count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(ImageRow.id))) or 0)

    def ids(self) -> NDArray[np.int64]:
        with self.session() as s:
            return np.fromiter(s.scalars(select(ImageRow.id).order_by(ImageRow.id)), dtype=np.int64)

    def ids_by_sha(self, hashes: Iterable[str]) -> dict[str, int]:
        hashes = list(dict.fromkeys(hashes))
        found: dict[str, int] = {}
        with self.session() as s:
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                query = select(ImageRow.sha256, ImageRow.id).where(ImageRow.sha256.in_(chunk))
                found.update({sha: image_id for sha, image_id in s.execute(query)})
        return found

    def insert(self, images: Sequence[NewImage], model: str, weights_hash: str) -> dict[str, tuple[int, bool]]:
        """Insert images in one transaction; content already present only gains the new name.

        Returns sha256 -> (id, added) where `added` is False for content that was already stored.
        """
        now = datetime.now(UTC)
        result: dict[str, tuple[int, bool]] = {}
        with self.session() as s:
            query = select(ImageRow.sha256, ImageRow.id).where(ImageRow.sha256.in_({i.sha256 for i in images}))
            existing = {sha: image_id for sha, image_id in s.execute(query)}
            for sha, image_id in existing.items():
                result[sha] = (image_id, False)
            fresh = list({i.sha256: i for i in images if i.sha256 not in existing}.values())
            if fresh:
                # One multi-row INSERT ... RETURNING for the batch (row by row, the ORM costs ~1 ms an image).
                # ON CONFLICT DO NOTHING: another process (a replica) may have stored the same bytes since the
                # SELECT above; its row wins and this batch reports the content as already stored.
                rows = [
                    {
                        "sha256": img.sha256,
                        "byte_size": img.byte_size,
                        "width": img.width,
                        "height": img.height,
                        "format": img.format,
                        "model": model,
                        "weights_hash": weights_hash,
                        "predictions": _predictions_to_json(img.predictions),
                        "embedding": np.ascontiguousarray(img.embedding, dtype=np.float32).tobytes(),
                        "created_at": now,
                    }
                    for img in fresh
                ]
                stmt = self._insert(ImageRow).on_conflict_do_nothing(index_elements=["sha256"])
                inserted = s.execute(stmt.returning(ImageRow.sha256, ImageRow.id), rows)
                for sha, image_id in inserted:
                    existing[sha] = image_id
                    result[sha] = (image_id, True)
                lost = [img.sha256 for img in fresh if img.sha256 not in result]
                if lost:
                    query = select(ImageRow.sha256, ImageRow.id).where(ImageRow.sha256.in_(lost))
                    for sha, image_id in s.execute(query):
                        existing[sha] = image_id
                        result[sha] = (image_id, False)
                labels = [
                    {"image_id": existing[img.sha256], "class_index": c}
                    for img in fresh
                    if result[img.sha256][1]
                    for c in sorted({p.class_index for p in img.predictions})
                ]
                if labels:
                    s.execute(self._insert(LabelRow), labels)
            self._add_names(s, [(existing[i.sha256], i.name, i.path) for i in images])
        return result

    def add_names(self, names: Sequence[tuple[int, str, str]]) -> None:
        """Record (image_id, name, path) sightings of content that is already stored."""
        with self.session() as s:
            self._add_names(s, names)

    def _add_names(self, s: Session, names: Sequence[tuple[int, str, str]]) -> None:
        rows = [{"image_id": i, "name": n, "path": p} for i, n, p in dict.fromkeys(names)]
        if rows:
            # Parameters as a list (executemany): one statement compiled once, not one VALUES clause of 3 x N
            # parameters compiled anew (8x faster at a thousand names).
            s.execute(self._insert(NameRow).on_conflict_do_nothing(), rows)

    # --- files already read (see index.seen_files) --------------------------------------------------------

    def seen_files(self, paths: Sequence[str]) -> dict[str, tuple[FileStat, str]]:
        """path -> (stat, sha256) of the files among `paths` that were read and remembered before."""
        f = SeenFileRow
        columns = select(f.path, f.size, f.mtime_ns, f.ctime_ns, f.inode, f.sha256)
        found: dict[str, tuple[FileStat, str]] = {}
        with self.session() as s:
            for start in range(0, len(paths), 900):
                for path, size, mtime_ns, ctime_ns, inode, sha in s.execute(
                    columns.where(f.path.in_(paths[start : start + 900]))
                ):
                    found[path] = (FileStat(size, mtime_ns, ctime_ns, inode), sha)
        return found

    def remember_files(self, files: Sequence[tuple[str, FileStat, str]]) -> None:
        """Record (path, stat, sha256) of files just read, replacing what was recorded for those paths."""
        rows = [{"path": p, "sha256": h, **asdict(st)} for p, st, h in {f[0]: f for f in files}.values()]
        if not rows:
            return
        stmt = self._insert(SeenFileRow)
        updated = {c: stmt.excluded[c] for c in ("size", "mtime_ns", "ctime_ns", "inode", "sha256")}
        with self.session() as s:
            s.execute(stmt.on_conflict_do_update(index_elements=["path"], set_=updated), rows)

    def predictions_of(self, ids: Sequence[int]) -> dict[int, list[Prediction]]:
        """Stored predictions by id (only the predictions: no names, no embedding)."""
        found: dict[int, list[Prediction]] = {}
        unique = list(dict.fromkeys(int(i) for i in ids))
        with self.session() as s:
            for start in range(0, len(unique), 900):
                query = select(ImageRow.id, ImageRow.predictions).where(ImageRow.id.in_(unique[start : start + 900]))
                found.update((image_id, _predictions_from_json(raw)) for image_id, raw in s.execute(query))
        return found

    def get(self, image_id: int) -> ImageInfo | None:
        with self.session() as s:
            row = s.get(ImageRow, image_id)
            return _info(row) if row else None

    def get_many(self, ids: Sequence[int]) -> dict[int, ImageInfo]:
        with self.session() as s:
            # selectinload: one query for all the names, not one per image.
            query = select(ImageRow).where(ImageRow.id.in_(list(ids))).options(selectinload(ImageRow.names))
            rows = s.scalars(query).all()
            return {r.id: _info(r) for r in rows}

    def find_by_sha(self, sha256: str) -> ImageInfo | None:
        with self.session() as s:
            row = s.scalar(select(ImageRow).where(ImageRow.sha256 == sha256))
            return _info(row) if row else None

    def ids_by_name(self, name: str) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(NameRow.image_id).where(NameRow.name == name).distinct()))

    def ids_with_labels(self, class_indices: Iterable[int]) -> NDArray[np.int64]:
        with self.session() as s:
            q = select(LabelRow.image_id).where(LabelRow.class_index.in_(list(class_indices))).distinct()
            return np.fromiter(s.scalars(q), dtype=np.int64)

    def list_images(
        self, offset: int, limit: int, classes: Iterable[int] | None = None, name: str | None = None
    ) -> list[ImageInfo]:
        """A page of images in id order, optionally only those with one of `classes` among their top
        predictions and a name containing `name` (ASCII letters in any case)."""
        # The page's ids first, from the narrow id index (an offset walks it, not the wide rows), then those rows.
        page = (
            _filtered(select(ImageRow.id), classes, name, ilike=self._ilike)
            .order_by(ImageRow.id)
            .offset(offset)
            .limit(limit)
        )
        with self.session() as s:
            ids = list(s.scalars(page))
            # The embedding is most of a row and listings never show it.
            query = select(ImageRow).where(ImageRow.id.in_(ids)).order_by(ImageRow.id)
            rows = s.scalars(query.options(selectinload(ImageRow.names), defer(ImageRow.embedding))).all()
            return [_info(r) for r in rows]

    def count_images(self, classes: Iterable[int] | None = None, name: str | None = None) -> int:
        """How many images `list_images` with the same filters pages through."""
        if classes is None and not name:
            return self.count()
        with self.session() as s:
            return int(s.scalar(_filtered(select(func.count(ImageRow.id)), classes, name, ilike=self._ilike)) or 0)

    def embeddings(self, ids: Sequence[int], dim: int) -> NDArray[np.float32]:
        """Stored vectors for `ids`, in that order.

        Raises:
            KeyError: an id is not stored.
        """
        out = np.empty((len(ids), dim), dtype=np.float32)
        pos = {int(i): n for n, i in enumerate(ids)}
        with self.session() as s:
            for start in range(0, len(ids), 900):
                chunk = [int(i) for i in ids[start : start + 900]]
                query = select(ImageRow.id, ImageRow.embedding).where(ImageRow.id.in_(chunk))
                for image_id, blob in s.execute(query):
                    out[pos.pop(image_id)] = np.frombuffer(blob, dtype=np.float32)
        if pos:
            raise KeyError(f"not stored: {sorted(pos)[:5]}")
        return out

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """All (ids, vectors) in id order, a batch at a time."""
        last = 0
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(ImageRow.id, ImageRow.embedding).where(ImageRow.id > last).order_by(ImageRow.id).limit(batch)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            yield ids, vectors
            last = int(ids[-1])

    def iter_rows(self, batch: int = 256) -> Iterator[list[tuple[int, str]]]:
        """All (id, sha256) pairs in id order, a batch at a time (for re-embedding)."""
        last = 0
        while True:
            query = select(ImageRow.id, ImageRow.sha256).where(ImageRow.id > last).order_by(ImageRow.id).limit(batch)
            with self.session() as s:
                rows = [(int(i), str(h)) for i, h in s.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def update_embeddings(
        self,
        updates: Sequence[tuple[int, NDArray[np.float32], list[Prediction]]],
        model: str,
        weights_hash: str,
        meta: dict[str, str],
    ) -> None:
        """Replace embeddings and predictions, and the index meta, in one transaction."""
        with self.session() as s:
            for key, value in meta.items():
                s.merge(MetaRow(key=key, value=value))
            for image_id, vector, preds in updates:
                row = s.get(ImageRow, image_id)
                if row is None:
                    continue
                row.embedding = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
                row.predictions = _predictions_to_json(preds)
                row.model = model
                row.weights_hash = weights_hash
                s.execute(delete(LabelRow).where(LabelRow.image_id == image_id))
                s.add_all(LabelRow(image_id=image_id, class_index=c) for c in {p.class_index for p in preds})

    def delete(self, image_id: int) -> ImageInfo | None:
        """Delete the row (names and labels cascade), then its blob. Returns what was deleted."""
        with self.session() as s:
            row = s.get(ImageRow, image_id)
            if row is None:
                return None
            info = _info(row)
            s.delete(row)
        self.blobs.delete(info.sha256)
        return info
