"""Verdicts of duplicate verification, by content: a candidate pair's pixels are compared once, not on every
duplicate search (`index.duplicates.verifier`).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pair_verdicts",
        sa.Column("sha_a", sa.String(64), primary_key=True),
        sa.Column("sha_b", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pair_verdicts")
