"""Alembic environment: the URL comes from Settings (or the caller's config), never from an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import shared.kb_models
import shared.sandbox.models  # noqa: F401
from shared.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "migrations need sqlalchemy.url (set by `switchboard migrate`)"
    connectable = create_engine(url, poolclass=pool.NullPool)  # normalised by shared.migrate
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            # The KB tables exist only where pgvector does (0003): never autogenerate them.
            include_object=lambda obj, name, type_, *_: not (type_ == "table" and str(name).startswith("kb_")),
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
