"""kb_sections.questions: the questions a section answers, as customers ask them

Reviewed by hand. An article's front matter may list, per section, customers' phrasings
of the questions it answers (docs/knowledge-base.md); re-ranking scores a question against
them as passages of the section (agents/knowledge/retrieval.py). They are stored beside
the section's text, never inside it, because the answer is composed from the text alone.

Like 0003 this touches nothing where the knowledge-base tables do not exist (no
pgvector): `switchboard kb init` runs this upgrade after 0003's. Existing sections get an
empty list; the next `switchboard kb import` fills it (the pipeline version changed, so
every article is imported again).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 07:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _has_kb_tables() -> bool:
    return op.get_bind().execute(sa.text("SELECT to_regclass('kb_sections')")).scalar() is not None


def upgrade() -> None:
    if _has_kb_tables():
        # IF NOT EXISTS: `switchboard kb init` runs this again on a database migrated long ago.
        op.execute("ALTER TABLE kb_sections ADD COLUMN IF NOT EXISTS questions text[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    if _has_kb_tables():
        op.execute("ALTER TABLE kb_sections DROP COLUMN IF EXISTS questions")
