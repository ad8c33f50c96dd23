"""The trash (`images.trashed_at`), names recorded on a kept image from the copies resolved into it
(`image_names.merged_from`), and "not duplicates" decisions keyed by content hash.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# As in 0001: 64-bit ids on PostgreSQL, SQLite's rowid spelt INTEGER.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs (no table copy on SQLite): a million-row table is upgraded in milliseconds.
    op.add_column("images", sa.Column("trashed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_images_trashed_at", "images", ["trashed_at"])
    op.add_column("image_names", sa.Column("merged_from", sa.String(64), nullable=True))
    op.create_table(
        "duplicate_dismissals",
        sa.Column("id", Id, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "duplicate_dismissal_members",
        sa.Column("dismissal_id", Id, sa.ForeignKey("duplicate_dismissals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
    )
    op.create_index("ix_duplicate_dismissal_members_sha256", "duplicate_dismissal_members", ["sha256"])


def downgrade() -> None:
    op.drop_table("duplicate_dismissal_members")
    op.drop_table("duplicate_dismissals")
    with op.batch_alter_table("image_names") as batch:
        batch.drop_column("merged_from")
    op.drop_index("ix_images_trashed_at", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("trashed_at")
