"""Files already read (path, size, times, inode and content hash), and the narrow id index on images.

`ix_images_id` was first made outside migrations, when a data directory was opened, so some databases have it
already.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_id", "images", ["id"], if_not_exists=True)
    op.create_table(
        "seen_files",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("ctime_ns", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seen_files")
    op.drop_index("ix_images_id", "images")
