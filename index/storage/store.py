"""The metadata store: the source of truth for every image, its names, predictions and embedding (the tables
are in `index.storage.schema`), and the kept image bytes."""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast, get_args

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Select,
    String,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, defer, selectinload, sessionmaker
from sqlalchemy.sql import Executable

from index.errors import BackendUnavailable, ImageInTrash, InvalidArgument, NotInTrash, UnknownReference
from index.model.exif import NO_EXIF, PhotoExif
from index.model.registry import Prediction
from index.storage import blobs as blob_storage
from index.storage.database import SQLITE_FILE, create_store_engine, migrate, sqlite_url
from index.storage.datadir import check_database_present
from index.storage.permissions import create_private, make_private_dir
from index.storage.schema import (
    DismissalMemberRow,
    DismissalRow,
    ImageRow,
    LabelRow,
    MetaRow,
    NameRow,
    PairVerdictRow,
    SeenFileRow,
)
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
    exif: PhotoExif = NO_EXIF


@dataclass(frozen=True)
class ReplacedCopy:
    """A file of a duplicate copy that went to the trash when its group was resolved in favour of this image."""

    name: str
    path: str
    sha256: str  # the copy's content


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
    trashed_at: datetime | None = None  # None while it is live
    replaced: list[ReplacedCopy] = field(default_factory=list)
    # From its EXIF (see `PhotoExif`); None where the file does not say.
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    @property
    def filename(self) -> str:
        return self.names[0] if self.names else ""


def _predictions_to_json(preds: Sequence[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "class_index": p.class_index, "score": round(p.score, 6)} for p in preds]


def _predictions_from_json(raw: list[dict[str, Any]]) -> list[Prediction]:
    return [Prediction(str(p["label"]), int(p["class_index"]), float(p["score"])) for p in raw]


@dataclass(frozen=True)
class Dismissal:
    """A decision that some images (by content) are not duplicates of each other."""

    id: int
    created_at: datetime
    sha256s: list[str]


def _utc(when: datetime) -> datetime:
    # SQLite keeps no time zone; the store always writes UTC.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _info(row: Any, names: Sequence[Any] | None = None) -> ImageInfo:
    """An `ImageRow`, or a row of `_INFO_COLUMNS` with its names in `names`."""
    names = row.names if names is None else names
    own = [n for n in names if n.merged_from is None]
    return ImageInfo(
        id=row.id,
        sha256=row.sha256,
        names=list(dict.fromkeys(n.name for n in own)),
        paths=[n.path for n in own if n.path],
        byte_size=row.byte_size,
        width=row.width,
        height=row.height,
        format=row.format,
        model=row.model,
        predictions=_predictions_from_json(row.predictions),
        created_at=_utc(row.created_at),
        trashed_at=_utc(row.trashed_at) if row.trashed_at is not None else None,
        replaced=[ReplacedCopy(n.name, n.path, n.merged_from) for n in names if n.merged_from is not None],
        taken_at=row.taken_at,
        camera_make=row.camera_make,
        camera_model=row.camera_model,
        lens=row.lens,
        latitude=row.latitude,
        longitude=row.longitude,
    )


# What `_info` reads, for queries that build no ORM objects (cheaper per row: a search's hits are read so).
_INFO_COLUMNS = [c for c in ImageRow.__table__.c if c.name not in ("embedding", "weights_hash")]


def _among(column: Any, postgresql: bool, kind: Any = BigInteger) -> ColumnElement[bool]:
    """`column` is one of the values bound as "values": on PostgreSQL one array parameter (`= ANY`), so nothing
    is rendered or bound per value; elsewhere an expanding IN (at most `_CHUNK` values). Ids go as 64-bit
    integers: an id past the column's 32 bits (one a client made up) matches nothing rather than failing."""
    if postgresql:
        return cast(ColumnElement[bool], column == any_(bindparam("values", type_=ARRAY(kind))))
    return cast(ColumnElement[bool], column.in_(bindparam("values", expanding=True)))


_CHUNK = 900  # values per IN on SQLite (its default limit is 999 bound parameters)


class _Name(NamedTuple):
    """A name of an image, as a search's reads give it (`_NAME_ROWS`)."""

    id: int
    name: str
    path: str
    merged_from: str | None


_NAME_ROWS = "name_rows"


def _name_rows(postgresql: bool) -> Any:
    """The image's names as one JSON array of [id, name, path, merged_from] (unordered: `_names` sorts them), a
    column of the image's own row: its names come with it instead of in a second query."""
    n = NameRow
    columns = (n.id, n.name, n.path, n.merged_from)
    agg = (
        func.json_agg(func.json_build_array(*columns))
        if postgresql
        else func.json_group_array(func.json_array(*columns))
    )
    return type_coerce(select(agg).where(n.image_id == ImageRow.id).scalar_subquery(), JSON).label(_NAME_ROWS)


def _names(row: Any) -> list[_Name]:
    """The names `_name_rows` read with `row`, in the order they were added."""
    return sorted((_Name(*n) for n in getattr(row, _NAME_ROWS) or ()), key=lambda n: n.id)


@dataclass(frozen=True)
class _Reads:
    """The statements a search's reads run, built once per dialect (building one costs more than running it).
    They run on the session's connection: no ORM objects are made from their rows."""

    rows: Executable
    rows_with_embedding: Executable
    embeddings: Executable
    verdicts: Executable

    @staticmethod
    @functools.cache
    def of(postgresql: bool) -> _Reads:
        v = PairVerdictRow
        row = (*_INFO_COLUMNS, _name_rows(postgresql))
        return _Reads(
            rows=select(*row).where(_among(ImageRow.id, postgresql)),
            rows_with_embedding=select(*row, ImageRow.embedding).where(_among(ImageRow.id, postgresql)),
            embeddings=select(ImageRow.id, ImageRow.embedding).where(_among(ImageRow.id, postgresql)),
            verdicts=select(v.sha_a, v.sha_b, v.evidence).where(
                _among(v.sha_a, postgresql, String), v.version == bindparam("version")
            ),
        )


def _infos(s: Session, ids: Collection[int], postgresql: bool) -> dict[int, ImageInfo]:
    """The stored images among `ids` (at most `_CHUNK`), by id, with their names, in one query."""
    rows = s.connection().execute(_Reads.of(postgresql).rows, {"values": [int(i) for i in ids]})
    return {r.id: _info(r, _names(r)) for r in rows}


LIVE: ColumnElement[bool] = ImageRow.trashed_at.is_(None)
IN_TRASH: ColumnElement[bool] = ImageRow.trashed_at.is_not(None)

# The orders a listing can take: by id (the order images were added in), date taken, first name or byte size.
ImageSort = Literal["added", "taken", "name", "size"]
IMAGE_SORTS: tuple[str, ...] = get_args(ImageSort)


@dataclass(frozen=True)
class ImageFilter:
    """What a listing keeps besides labels and names: taken in [`taken_after`, `taken_before`) by the camera's
    clock (a date is its midnight; images without a date taken are left out by either bound), and a camera
    whose make and model, together, contain `camera` (in any case)."""

    taken_after: datetime | date | None = None
    taken_before: datetime | date | None = None
    camera: str | None = None


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _camera_time(when: datetime | date) -> datetime:
    """`when` as the naive wall-clock time `taken_at` is kept in."""
    if not isinstance(when, datetime):
        return datetime.combine(when, time())
    return when.replace(tzinfo=None)


def _first_name_column() -> Any:
    """The image's first own name (what `ImageInfo.filename` shows), as a correlated subquery."""
    return (
        select(NameRow.name)
        .where(NameRow.image_id == ImageRow.id, NameRow.merged_from.is_(None))
        .order_by(NameRow.id)
        .limit(1)
        .scalar_subquery()
    )


def _order(sort: str, descending: bool) -> list[Any]:
    """ORDER BY terms for a listing: the key (images without it last, either way), then the id."""
    if sort not in IMAGE_SORTS:
        raise InvalidArgument(f"sort must be one of {', '.join(IMAGE_SORTS)} (a leading '-' for descending)")
    keys: dict[str, Any] = {"taken": ImageRow.taken_at, "name": _first_name_column(), "size": ImageRow.byte_size}
    key = keys.get(sort)
    terms = [] if key is None else [(key.desc() if descending else key.asc()).nulls_last()]
    return [*terms, ImageRow.id.desc() if descending else ImageRow.id.asc()]


def _filtered(
    query: Select[Any],
    classes: Iterable[int] | None,
    name: str | None,
    *,
    ilike: bool = False,
    photo: ImageFilter | None = None,
) -> Select[Any]:
    """Live images (not in the trash) with one of `classes` among their top predictions and a name containing
    `name` (a name recorded from a copy resolved into an image counts), and as `photo` asks."""
    query = query.where(LIVE)
    if photo is not None:
        if photo.taken_after is not None:
            query = query.where(ImageRow.taken_at >= _camera_time(photo.taken_after))
        if photo.taken_before is not None:
            query = query.where(ImageRow.taken_at < _camera_time(photo.taken_before))
        if photo.camera:
            camera = func.coalesce(ImageRow.camera_make, "") + literal(" ") + func.coalesce(ImageRow.camera_model, "")
            query = query.where(camera.ilike(f"%{_escaped(photo.camera)}%", escape="\\"))
    # Semi-joins: the label filter goes through the class_index index; a substring of a name cannot use an
    # index, so the narrow name index is scanned (tests/benchmarks/web_library.py measures both at 100k).
    if classes is not None:
        labelled = select(LabelRow.image_id).where(LabelRow.class_index.in_(sorted(set(classes))))
        query = query.where(ImageRow.id.in_(labelled))
    if name:
        escaped = _escaped(name)
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
        self._postgresql = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A search's reads need no transaction (a hit deleted meanwhile is dropped, not shown): on PostgreSQL
        # they run in autocommit, without a BEGIN and a COMMIT round trip each. SQLite begins none for a read.
        reads = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgresql else self.engine
        self._read_sessions = sessionmaker(reads, expire_on_commit=False)
        self._pinned = threading.local()  # the session `reading` holds, per thread

    @contextmanager
    def session(self) -> Iterator[Session]:
        if (pinned := self._held()) is not None:
            yield pinned
            return
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Within the block, this thread's store calls share one session: one connection checkout and liveness
        ping instead of one per call (about 0.7 ms each on PostgreSQL), and on PostgreSQL no transaction (each
        statement commits itself). For a request's reads (a verdict it remembers is written with them, at the
        end, in one statement)."""
        if self._held() is not None:
            yield
            return
        with self._read_sessions() as session, session.begin():
            self._pinned.session = session
            try:
                yield
            finally:
                self._pinned.session = None

    def _held(self) -> Session | None:
        """The session `reading` holds for this thread, if any."""
        return getattr(self._pinned, "session", None)

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
        """Live images (the trash not counted)."""
        with self.session() as s:
            return int(s.scalar(select(func.count(ImageRow.id)).where(LIVE)) or 0)

    def ids(self) -> NDArray[np.int64]:
        """The live images' ids, sorted: what the vector stores hold."""
        with self.session() as s:
            return np.fromiter(s.scalars(select(ImageRow.id).where(LIVE).order_by(ImageRow.id)), dtype=np.int64)

    def live_among(self, ids: Collection[int]) -> list[int]:
        """Those of `ids` that are stored and not in the trash, sorted."""
        return self._ids_where(ids, LIVE)

    def trashed_among(self, ids: Collection[int]) -> list[int]:
        """Those of `ids` that are in the trash, sorted."""
        return self._ids_where(ids, IN_TRASH)

    def _ids_where(self, ids: Collection[int], condition: ColumnElement[bool]) -> list[int]:
        unique = sorted({int(i) for i in ids})
        found: list[int] = []
        with self.session() as s:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                found.extend(s.scalars(select(ImageRow.id).where(ImageRow.id.in_(chunk), condition)))
        return sorted(found)

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
                        "taken_at": img.exif.taken_at,
                        "camera_make": img.exif.camera_make,
                        "camera_model": img.exif.camera_model,
                        "lens": img.exif.lens,
                        "latitude": img.exif.latitude,
                        "longitude": img.exif.longitude,
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
            for start in range(0, len(paths), _CHUNK):
                for path, size, mtime_ns, ctime_ns, inode, sha in s.execute(
                    columns.where(f.path.in_(paths[start : start + _CHUNK]))
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

    # --- verification verdicts (see index.duplicates.verifier) -----------------------------------------------

    def pair_verdicts(self, keys: Sequence[tuple[str, str]], version: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(sha, sha) -> stored evidence, for the pairs among `keys` (each the smaller hash first) verified before."""
        wanted = set(keys)
        firsts = sorted({a for a, _ in wanted})
        found: dict[tuple[str, str], dict[str, Any]] = {}
        query = _Reads.of(self._postgresql).verdicts
        with self.session() as s:
            for start in range(0, len(firsts), 500):
                values = {"values": firsts[start : start + 500], "version": version}
                for a, b, evidence in s.connection().execute(query, values):
                    if (a, b) in wanted:
                        found[(a, b)] = evidence
        return found

    def remember_verdicts(self, verdicts: Sequence[tuple[tuple[str, str], dict[str, Any]]], version: str) -> None:
        """Keep evidence per (sha, sha) pair (the smaller hash first); a pair already kept stays as it was."""
        rows = [{"sha_a": a, "sha_b": b, "version": version, "evidence": e} for (a, b), e in dict(verdicts).items()]
        if rows:
            with self.session() as s:
                s.execute(self._insert(PairVerdictRow).on_conflict_do_nothing(), rows)

    def predictions_of(self, ids: Sequence[int]) -> dict[int, list[Prediction]]:
        """Stored predictions by id (only the predictions: no names, no embedding)."""
        found: dict[int, list[Prediction]] = {}
        unique = list(dict.fromkeys(int(i) for i in ids))
        with self.session() as s:
            for start in range(0, len(unique), _CHUNK):
                query = select(ImageRow.id, ImageRow.predictions).where(ImageRow.id.in_(unique[start : start + _CHUNK]))
                found.update((image_id, _predictions_from_json(raw)) for image_id, raw in s.execute(query))
        return found

    def get(self, image_id: int) -> ImageInfo | None:
        with self.session() as s:
            return _infos(s, [image_id], self._postgresql).get(image_id)

    def get_with_embedding(self, image_id: int, dim: int) -> tuple[ImageInfo, NDArray[np.float32]] | None:
        """`get` and the image's stored vector (of `dim` numbers), read together: what a search by it needs."""
        with self.session() as s:
            query = _Reads.of(self._postgresql).rows_with_embedding
            row = s.connection().execute(query, {"values": [image_id]}).first()
        if row is None:
            return None
        info = _info(row, _names(row))
        vector = np.frombuffer(row.embedding, dtype=np.float32)
        if vector.shape != (dim,):
            raise ValueError(f"image {image_id}'s stored vector has {vector.size} numbers, not {dim}")
        return info, vector

    def get_many(self, ids: Sequence[int]) -> dict[int, ImageInfo]:
        found: dict[int, ImageInfo] = {}
        with self.session() as s:
            for start in range(0, len(ids), _CHUNK):
                found.update(_infos(s, ids[start : start + _CHUNK], self._postgresql))
        return found

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

    def label_counts(self) -> dict[int, int]:
        """Live images per ImageNet class among their top predictions, for each class some image has."""
        query = (
            select(LabelRow.class_index, func.count())
            .join(ImageRow, ImageRow.id == LabelRow.image_id)
            .where(LIVE)
            .group_by(LabelRow.class_index)
        )
        with self.session() as s:
            return {int(c): int(n) for c, n in s.execute(query)}

    def list_images(
        self,
        offset: int,
        limit: int,
        classes: Iterable[int] | None = None,
        name: str | None = None,
        photo: ImageFilter | None = None,
        sort: str = "added",
        descending: bool = False,
    ) -> list[ImageInfo]:
        """A page of live images in `sort` order (`IMAGE_SORTS`; the id breaks ties), optionally only those with
        one of `classes` among their top predictions, a name containing `name` (ASCII letters in any case) and
        as `photo` asks.

        Raises:
            InvalidArgument: `sort` is not one of IMAGE_SORTS.
        """
        # The page's ids first, from the narrow id index (an offset walks it, not the wide rows), then those rows.
        page = (
            _filtered(select(ImageRow.id), classes, name, ilike=self._postgresql, photo=photo)
            .order_by(*_order(sort, descending))
            .offset(offset)
            .limit(limit)
        )
        with self.session() as s:
            ids = list(s.scalars(page))
            # The embedding is most of a row and listings never show it.
            query = select(ImageRow).where(ImageRow.id.in_(ids))
            rows = s.scalars(query.options(selectinload(ImageRow.names), defer(ImageRow.embedding))).all()
            by_id = {r.id: _info(r) for r in rows}
            return [by_id[i] for i in ids if i in by_id]

    def count_images(
        self, classes: Iterable[int] | None = None, name: str | None = None, photo: ImageFilter | None = None
    ) -> int:
        """How many images `list_images` with the same filters pages through."""
        query = _filtered(select(func.count(ImageRow.id)), classes, name, ilike=self._postgresql, photo=photo)
        with self.session() as s:
            return int(s.scalar(query) or 0)

    def embeddings(self, ids: Sequence[int], dim: int) -> NDArray[np.float32]:
        """Stored vectors for `ids`, in that order.

        Raises:
            KeyError: an id is not stored.
        """
        out = np.empty((len(ids), dim), dtype=np.float32)
        pos = {int(i): n for n, i in enumerate(ids)}
        query = _Reads.of(self._postgresql).embeddings
        with self.session() as s:
            for start in range(0, len(ids), _CHUNK):
                chunk = [int(i) for i in ids[start : start + _CHUNK]]
                for image_id, blob in s.connection().execute(query, {"values": chunk}):
                    out[pos.pop(image_id)] = np.frombuffer(blob, dtype=np.float32)
        if pos:
            raise KeyError(f"not stored: {sorted(pos)[:5]}")
        return out

    def iter_embeddings(self, batch: int = 10_000) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """All live (ids, vectors) in id order, a batch at a time: what a vector store is built from."""
        last = 0
        while True:
            with self.session() as s:
                query = select(ImageRow.id, ImageRow.embedding).where(ImageRow.id > last, LIVE)
                rows = s.execute(query.order_by(ImageRow.id).limit(batch)).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            yield ids, vectors
            last = int(ids[-1])

    def iter_rows(self, batch: int = 256) -> Iterator[list[tuple[int, str]]]:
        """All (id, sha256) pairs in id order, the trash included, a batch at a time (for re-embedding)."""
        last = 0
        while True:
            query = select(ImageRow.id, ImageRow.sha256).where(ImageRow.id > last).order_by(ImageRow.id).limit(batch)
            with self.session() as s:
                rows = [(int(i), str(h)) for i, h in s.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def iter_recorded_paths(self, batch: int = 900) -> Iterator[list[tuple[int, list[str]]]]:
        """(id, the path of each of its own names: "" for one uploaded without a path) of every live image, in
        id order, a batch of images at a time (names recorded from a resolved copy are not its own)."""
        last = 0
        while True:
            page = select(ImageRow.id).where(LIVE, ImageRow.id > last).order_by(ImageRow.id).limit(batch)
            with self.session() as s:
                ids = [int(i) for i in s.scalars(page)]
                if not ids:
                    return
                names = select(NameRow.image_id, NameRow.path).where(
                    NameRow.image_id.in_(ids), NameRow.merged_from.is_(None)
                )
                paths: dict[int, list[str]] = {i: [] for i in ids}
                for image_id, path in s.execute(names):
                    paths[int(image_id)].append(str(path))
            yield list(paths.items())
            last = ids[-1]

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

    # --- the trash --------------------------------------------------------------------------------------

    def move_to_trash(self, image_id: int) -> ImageInfo:
        """Mark a live image as in the trash (its row, names, bytes and embedding stay). Returns it, trashed.

        Raises:
            UnknownReference: no such image.
            ImageInTrash: it is in the trash already.
        """
        with self.session() as s:
            row = _live_row(s, image_id)
            row.trashed_at = datetime.now(UTC)
            s.flush()
            return _info(row)

    def restore(self, image_id: int) -> ImageInfo:
        """Take an image out of the trash. Returns it, live again.

        Raises:
            UnknownReference: no such image.
            NotInTrash: it is not in the trash.
        """
        with self.session() as s:
            row = _trashed_row(s, image_id)
            row.trashed_at = None
            s.flush()
            return _info(row)

    def restore_many(self, ids: Collection[int]) -> list[int]:
        """Take those of `ids` that are in the trash out of it, in one transaction; returns them, sorted."""
        unique = sorted({int(i) for i in ids})
        restored: list[int] = []
        with self.session() as s:
            for start in range(0, len(unique), _CHUNK):
                stmt = (
                    update(ImageRow)
                    .where(ImageRow.id.in_(unique[start : start + _CHUNK]), IN_TRASH)
                    .values(trashed_at=None)
                    .returning(ImageRow.id)
                )
                restored.extend(s.scalars(stmt))
        return sorted(restored)

    def purge(self, image_id: int) -> ImageInfo:
        """Delete an image in the trash for good: the row (names and labels cascade), then its bytes.

        Raises:
            UnknownReference: no such image.
            NotInTrash: it is live (only the trash is purged).
        """
        with self.session() as s:
            row = _trashed_row(s, image_id)
            info = _info(row)
            s.delete(row)
        self.blobs.delete(info.sha256)
        return info

    def trashed_ids(self, before: datetime | None = None) -> list[int]:
        """Ids in the trash (only those trashed before `before`, when given), in id order."""
        query = select(ImageRow.id).where(IN_TRASH)
        if before is not None:
            query = query.where(ImageRow.trashed_at < before)
        with self.session() as s:
            return [int(i) for i in s.scalars(query.order_by(ImageRow.id))]

    def count_trash(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(ImageRow.id)).where(IN_TRASH)) or 0)

    def list_trash(self, offset: int, limit: int) -> list[ImageInfo]:
        """A page of the trash, most recently trashed first."""
        order = (ImageRow.trashed_at.desc(), ImageRow.id.desc())
        page = select(ImageRow.id).where(IN_TRASH).order_by(*order).offset(offset).limit(limit)
        with self.session() as s:
            ids = list(s.scalars(page))
            query = select(ImageRow).where(ImageRow.id.in_(ids)).order_by(*order)
            rows = s.scalars(query.options(selectinload(ImageRow.names), defer(ImageRow.embedding))).all()
            return [_info(r) for r in rows]

    def resolve_duplicates(self, keep: int, remove: Sequence[int]) -> tuple[ImageInfo, list[ImageInfo]]:
        """Keep one live image and move the live copies `remove` to the trash, in one transaction; every name
        and path of the copies is recorded on the kept image too. Returns (kept, trashed).

        Raises:
            InvalidArgument: `remove` is empty, repeats an id, or holds `keep`.
            UnknownReference, ImageInTrash: an id is unknown, or already in the trash.
        """
        if not remove:
            raise InvalidArgument("name at least one image to move to the trash")
        if len(set(remove)) != len(remove):
            raise InvalidArgument("an image is named twice in remove")
        if keep in remove:
            raise InvalidArgument(f"image {keep} cannot be both kept and removed")
        now = datetime.now(UTC)
        with self.session() as s:
            kept = _live_row(s, keep)
            copies = [_live_row(s, image_id) for image_id in remove]
            names = [
                {"image_id": keep, "name": n.name, "path": n.path, "merged_from": row.sha256}
                for row in copies
                for n in row.names
            ]
            if names:
                s.execute(self._insert(NameRow).on_conflict_do_nothing(), names)
            for row in copies:
                row.trashed_at = now
            s.flush()
            trashed = [_info(row) for row in copies]
            s.expire(kept, ["names"])  # read again with the names just recorded
            return _info(kept), trashed

    # --- "not duplicates" decisions -----------------------------------------------------------------------

    def add_dismissal(self, hashes: Sequence[str]) -> Dismissal:
        """Record that the images with these contents are not duplicates of each other."""
        with self.session() as s:
            row = DismissalRow(created_at=datetime.now(UTC))
            row.members = [DismissalMemberRow(sha256=h) for h in sorted(set(hashes))]
            s.add(row)
            s.flush()
            return _dismissal(row)

    def dismissals(self, offset: int, limit: int) -> list[Dismissal]:
        """A page of decisions, the newest first."""
        query = select(DismissalRow).order_by(DismissalRow.id.desc()).offset(offset).limit(limit)
        with self.session() as s:
            return [_dismissal(r) for r in s.scalars(query.options(selectinload(DismissalRow.members)))]

    def count_dismissals(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(DismissalRow.id))) or 0)

    def delete_dismissal(self, dismissal_id: int) -> Dismissal | None:
        """Undo a decision; returns it (None when there is no such decision)."""
        with self.session() as s:
            row = s.get(DismissalRow, dismissal_id)
            if row is None:
                return None
            dismissal = _dismissal(row)
            s.delete(row)
            return dismissal

    def dismissed_images(self) -> list[tuple[int, int]]:
        """(decision id, image id) for every stored image a decision names (by its content)."""
        member = DismissalMemberRow
        query = select(member.dismissal_id, ImageRow.id).join(ImageRow, ImageRow.sha256 == member.sha256)
        with self.session() as s:
            return [(int(d), int(i)) for d, i in s.execute(query)]


def _live_row(s: Session, image_id: int) -> ImageRow:
    row = s.get(ImageRow, image_id)
    if row is None:
        raise UnknownReference(f"no image with id {image_id}")
    if row.trashed_at is not None:
        raise ImageInTrash(f"image {image_id} ({_first_name(row)}) is in the trash")
    return row


def _trashed_row(s: Session, image_id: int) -> ImageRow:
    row = s.get(ImageRow, image_id)
    if row is None:
        raise UnknownReference(f"no image with id {image_id}")
    if row.trashed_at is None:
        raise NotInTrash(f"image {image_id} ({_first_name(row)}) is not in the trash")
    return row


def _first_name(row: ImageRow) -> str:
    return next((n.name for n in row.names if n.merged_from is None), row.sha256[:12])


def _dismissal(row: DismissalRow) -> Dismissal:
    return Dismissal(id=row.id, created_at=_utc(row.created_at), sha256s=[m.sha256 for m in row.members])
