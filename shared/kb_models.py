"""The knowledge base's tables: articles and their embedded sections (migrations 0003, 0017).

They exist only where Postgres has pgvector; ``kb.require_tables`` says what to do when
they do not. ``search_vector`` is filled on insert (see ``kb``), not generated, because
it weighs the article's title, which lives in the other table.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from shared.models import Base

EMBEDDING_DIMENSIONS = 384  # all-MiniLM-L6-v2


def vector_literal(values: Iterable[float]) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in values) + "]"


class Vector(UserDefinedType[list[float]]):
    """pgvector's ``vector(384)``, sent and read as its text form ``[0.1,0.2,...]``."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return f"vector({EMBEDDING_DIMENSIONS})"

    def bind_processor(self, dialect: Dialect) -> Any:
        return lambda value: None if value is None else vector_literal(value)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return lambda value: None if value is None else [float(x) for x in value.strip("[]").split(",")]


class KbArticle(Base):
    __tablename__ = "kb_articles"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # the file it came from, or "scenario"
    content_hash: Mapped[str] = mapped_column(String(64))
    # The article's words -> the words customers use for them (front matter ``terms``), read into every question.
    terms: Mapped[dict[str, list[str]]] = mapped_column(JSONB, server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class KbSection(Base):
    __tablename__ = "kb_sections"
    __table_args__ = (
        UniqueConstraint("article_id", "position", name="uq_kb_section_position"),
        Index(
            "ix_kb_sections_embedding",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        Index("ix_kb_sections_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    article_id: Mapped[str] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    position: Mapped[int]
    heading: Mapped[str] = mapped_column(Text)  # "Export to CSV", "Setup > On Android"
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(Vector())
    search_vector: Mapped[str] = mapped_column(TSVECTOR)
    # Customers' phrasings of what the section answers (front matter); searched, never shown.
    questions: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
