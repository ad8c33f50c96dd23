"""The schema as it was before migrations: images, their names and labels, index meta.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit ids on PostgreSQL (a billion images outgrow int4); SQLite's INTEGER PRIMARY KEY is already 64-bit
# and must be spelt INTEGER to be the rowid.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", Id, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("weights_hash", sa.String(64), nullable=False),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_images_sha256", "images", ["sha256"], unique=True)
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
    )
    op.create_table(
        "image_labels",
        sa.Column("image_id", Id, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("class_index", sa.Integer(), primary_key=True),
    )
    op.create_index("ix_image_labels_class", "image_labels", ["class_index"])
    op.create_table(
        "image_names",
        sa.Column("id", Id, primary_key=True),
        sa.Column("image_id", Id, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.UniqueConstraint("image_id", "name", "path"),
    )
    op.create_index("ix_image_names_image_id", "image_names", ["image_id"])
    op.create_index("ix_image_names_name", "image_names", ["name"])


def downgrade() -> None:
    op.drop_table("image_names")
    op.drop_table("image_labels")
    op.drop_table("meta")
    op.drop_table("images")
