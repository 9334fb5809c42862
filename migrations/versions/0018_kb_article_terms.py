"""kb_articles.terms: the article's words and the words customers use for them

Reviewed by hand. An article's front matter may list ``terms`` (docs/knowledge-base.md):
its own words, each with the words customers use for them ("tasks": ["to-dos"]). Search
reads a question with the customers' words put back into the articles' before it is
embedded (agents/knowledge/retrieval.py), so they are stored per article and read by
every search.

Like 0003 and 0017 this touches nothing where the knowledge-base tables do not exist (no
pgvector): `switchboard kb init` runs this upgrade after theirs. Existing articles get
no terms; the next `switchboard kb import` fills them (the pipeline version changed, so
every article is imported again).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def _has_kb_tables() -> bool:
    return op.get_bind().execute(sa.text("SELECT to_regclass('kb_articles')")).scalar() is not None


def upgrade() -> None:
    if _has_kb_tables():
        # IF NOT EXISTS: `switchboard kb init` runs this again on a database migrated long ago.
        op.execute("ALTER TABLE kb_articles ADD COLUMN IF NOT EXISTS terms jsonb NOT NULL DEFAULT '{}'::jsonb")


def downgrade() -> None:
    if _has_kb_tables():
        op.execute("ALTER TABLE kb_articles DROP COLUMN IF EXISTS terms")
