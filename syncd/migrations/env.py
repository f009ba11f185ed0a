"""Alembic environment. The connection is handed in by ``syncd.migrate``; the URL never
comes from a file, so migrations run identically from the CLI, the daemon and the tests."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool

import syncd.models

target_metadata = syncd.models.metadata
config = context.config


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # Tables we do not own (e.g. the APScheduler job store) are invisible to autogenerate.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        {"sqlalchemy.url": config.get_main_option("sqlalchemy.url")},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
