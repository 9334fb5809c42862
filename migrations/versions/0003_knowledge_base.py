"""knowledge base: articles and their embedded sections (pgvector), only where pgvector exists

The tables need the ``vector`` extension. A Postgres without it (a distribution package
that was never installed, a managed server that does not offer it) must still run the
rest of Switchboard, so this revision then creates nothing and logs one warning; the
knowledge agent reports what is missing when it is used. `switchboard kb init` runs this
revision's upgrade again once pgvector has been installed.

Reviewed by hand: the embedding is ``vector(384)`` (all-MiniLM-L6-v2) with an HNSW index
for cosine distance; ``search_vector`` is filled on insert (title, heading, text with
weights) and GIN-indexed for the keyword half of hybrid search; sections cascade with
their article, which is how a re-import replaces them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:10:00.000000
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import UserDefinedType

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("switchboard.migrations")

EMBEDDING_DIMENSIONS = 384


class _Vector(UserDefinedType[list[float]]):
    """pgvector's column type, spelled here so a migration never imports application code."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return f"vector({EMBEDDING_DIMENSIONS})"


def _pgvector_ready() -> bool:
    """Create the extension if this server has it; say why not in one line otherwise."""
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is None:
        log.warning(
            "pgvector is not installed in this Postgres: the knowledge-base tables are skipped "
            "(install the pgvector extension, then run `switchboard kb init`)"
        )
        return False
    try:
        # A savepoint: without the right to create extensions the migration goes on.
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        log.warning(
            "pgvector could not be enabled (%s): the knowledge-base tables are skipped "
            "(have a superuser run CREATE EXTENSION vector, then run `switchboard kb init`)",
            reason,
        )
        return False
    return True


def upgrade() -> None:
    if not _pgvector_ready():
        return
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT to_regclass('kb_sections')")).scalar() is not None:
        return  # `switchboard kb init` on a database that has them already
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "kb_sections",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("article_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", _Vector(), nullable=False),
        sa.Column("search_vector", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "position", name="uq_kb_section_position"),
    )
    op.create_index(
        "ix_kb_sections_embedding",
        "kb_sections",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_kb_sections_search_vector", "kb_sections", ["search_vector"], postgresql_using="gin")


def downgrade() -> None:
    # The extension stays: other schemas in the database may use it.
    op.execute("DROP TABLE IF EXISTS kb_sections")
    op.execute("DROP TABLE IF EXISTS kb_articles")
