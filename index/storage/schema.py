"""The metadata schema as SQLAlchemy ORM tables: images, their names and labels, the index's meta, and the
"not duplicates" decisions.

Alembic migrations (`index/storage/migrations`) create and change these tables; this module says what they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from index.storage.seen_files import MAX_PATH_CHARS


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """One row per unique image content."""

    __tablename__ = "images"
    # AUTOINCREMENT: a deleted id is never handed out again, so a stale vector can never alias a new image.
    # ix_images_id: the rows are wide (the embedding), so counting and paging in id order read a narrow index
    # instead of the table (a page at offset 100k: ~1.5 ms instead of ~100 ms).
    __table_args__ = (Index("ix_images_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    byte_size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    format: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    weights_hash: Mapped[str] = mapped_column(String(64))
    predictions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Most of a row (9 KB at the default width): loaded only when asked for (store.embeddings selects it).
    embedding: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When it was moved to the trash (NULL while it is live): kept whole, hidden from search and listings.
    trashed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True, default=None)
    # From the EXIF (`index.model.exif`), NULL where the file does not say. `taken_at` is the camera's clock, as
    # it wrote it: EXIF keeps no time zone.
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), index=True, default=None)
    camera_make: Mapped[str | None] = mapped_column(String(128), default=None)
    camera_model: Mapped[str | None] = mapped_column(String(128), default=None)
    lens: Mapped[str | None] = mapped_column(String(128), default=None)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    names: Mapped[list[NameRow]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True, order_by="NameRow.id"
    )


class NameRow(Base):
    """A name (and source path, when ingested from disk) an image was seen under."""

    __tablename__ = "image_names"
    __table_args__ = (UniqueConstraint("image_id", "name", "path"), Index("ix_image_names_name", "name"))

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(String(4096), default="")
    # The sha256 of the copy this name came from, when a duplicate group was resolved by keeping this image
    # and moving that copy to the trash; NULL for a name this image's own bytes were seen under.
    merged_from: Mapped[str | None] = mapped_column(String(64), default=None)
    image: Mapped[ImageRow] = relationship(back_populates="names")


class LabelRow(Base):
    """The top predicted classes of an image, for filtering searches by label."""

    __tablename__ = "image_labels"
    __table_args__ = (Index("ix_image_labels_class", "class_index"),)

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    class_index: Mapped[int] = mapped_column(primary_key=True)


class MetaRow(Base):
    """Key/value facts about the whole index: the model and embedding version it was built with."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024))


class PairVerdictRow(Base):
    """What the pixels of two stored contents say (`index.duplicates.verification`), by the verifier's version."""

    __tablename__ = "pair_verdicts"

    sha_a: Mapped[str] = mapped_column(String(64), primary_key=True)  # the smaller of the two
    sha_b: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class SeenFileRow(Base):
    """A local file as it was when last read and hashed (see `index.storage.seen_files`)."""

    __tablename__ = "seen_files"

    path: Mapped[str] = mapped_column(String(MAX_PATH_CHARS), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class DismissalRow(Base):
    """A person's decision that some images are not duplicates of each other."""

    __tablename__ = "duplicate_dismissals"
    # AUTOINCREMENT: an undone decision's id is never handed out again.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    members: Mapped[list[DismissalMemberRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="DismissalMemberRow.sha256"
    )


class DismissalMemberRow(Base):
    """One image of a decision, by content: the decision outlives re-ingests, the trash and rebuilds."""

    __tablename__ = "duplicate_dismissal_members"

    dismissal_id: Mapped[int] = mapped_column(
        ForeignKey("duplicate_dismissals.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
