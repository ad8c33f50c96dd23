"""Alembic environment: migrations run on the connection `index.storage.database.migrate` hands over.

New revisions: `alembic -x url=sqlite:///data/imgsim.sqlite3 revision --autogenerate -m "..."` from the
repository root (see alembic.ini), then check the generated file by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from index.storage.schema import Base

target_metadata = Base.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=postgresql+psycopg://... upgrade head")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
