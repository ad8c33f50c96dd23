"""What a photo's EXIF says: when it was taken (the camera's clock), the camera, the lens and the GPS position.

Images stored before this revision have none of it (NULL).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("taken_at", "camera_make", "camera_model", "lens", "latitude", "longitude")


def upgrade() -> None:
    # Plain ADD COLUMNs (no table copy on SQLite), as in 0003.
    op.add_column("images", sa.Column("taken_at", sa.DateTime(timezone=False), nullable=True))
    op.add_column("images", sa.Column("camera_make", sa.String(128), nullable=True))
    op.add_column("images", sa.Column("camera_model", sa.String(128), nullable=True))
    op.add_column("images", sa.Column("lens", sa.String(128), nullable=True))
    op.add_column("images", sa.Column("latitude", sa.Float(), nullable=True))
    op.add_column("images", sa.Column("longitude", sa.Float(), nullable=True))
    # Listing by date taken, and filtering by it, go through this index.
    op.create_index("ix_images_taken_at", "images", ["taken_at"])


def downgrade() -> None:
    op.drop_index("ix_images_taken_at", "images")
    with op.batch_alter_table("images") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
