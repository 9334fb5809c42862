"""The knowledge base: help-center articles, cut into sections, embedded and stored.

Articles are Markdown, HTML or plain text, with optional YAML front matter (``id``,
``title``, and ``questions``: per section, the questions it answers as customers ask them;
docs/knowledge-base.md). Each is cut by section (headings up to level 3; paragraphs for plain text),
every section keeps its heading path, and long sections are split on paragraphs so that
no chunk is longer than the embedding model reads. Sections are embedded with the local
MiniLM model and stored in Postgres with pgvector; a re-import replaces an article's
sections, and an unchanged article (same content hash) is not embedded again.

Searching it is retrieval.py; ``switchboard kb eval`` measures both.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal_column, select, text
from sqlalchemy.orm import Session

from agents.knowledge.chunking import FORMATS, Article, Section, chunk_article, embedding_text, read_article
from shared.db import after_commit
from shared.errors import ConfigurationError
from shared.kb_models import EMBEDDING_DIMENSIONS, Vector
from shared.kb_models import KbArticle as KbArticle  # re-exported: callers take the tables from kb
from shared.kb_models import KbSection as KbSection

EMBED_BATCH = 64
# Bump when chunking or the embedded text changes: every article is embedded again.
PIPELINE_VERSION = "4"  # 2: sections embedded as plain text (answers.flatten); 3: sections' questions stored; 4: terms
TS_CONFIG = "english"
_IMPORT_LOCK = 0x6B62  # pg_advisory_xact_lock key: one import at a time per database

PGVECTOR_MISSING = (
    "pgvector is not installed in this Postgres: install the pgvector extension "
    "(e.g. the postgresql-16-pgvector package) or run with the embedded Postgres (unset SWITCHBOARD_DATABASE_URL)"
)
TABLES_MISSING = (
    "The knowledge-base tables are missing although pgvector is available "
    "(this database was migrated without it): run `switchboard kb init` to create them"
)
KB_EMPTY = "The knowledge base is empty: import articles with `switchboard kb import DIR`"


class KnowledgeBaseUnavailable(ConfigurationError):
    """The database cannot hold a knowledge base; the message says what to install or run."""


@dataclass
class ImportReport:
    articles: int = 0  # new or changed, embedded
    sections: int = 0
    skipped: int = 0  # unchanged since the last import
    seconds: float = 0.0


# --------------------------------------------------------------------------- readiness


def require_tables(session: Session) -> None:
    """Raise KnowledgeBaseUnavailable with what to do when this database has no KB tables."""
    if session.execute(text("SELECT to_regclass('kb_sections')")).scalar() is not None:
        return
    available = session.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    raise KnowledgeBaseUnavailable(TABLES_MISSING if available else PGVECTOR_MISSING)


def counts(session: Session) -> tuple[int, int]:
    """(articles, sections) in the knowledge base."""
    require_tables(session)
    articles = session.scalar(select(func.count()).select_from(KbArticle)) or 0
    sections = session.scalar(select(func.count()).select_from(KbSection)) or 0
    return articles, sections


# --------------------------------------------------------------------------- import


def import_directory(session: Session, directory: Path, *, reset: bool = False) -> ImportReport:
    """Import every article under ``directory`` (recursively); ``reset`` empties the KB first."""
    if not directory.is_dir():
        raise ConfigurationError(f"{directory} is not a folder: give the folder that holds the articles")
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in FORMATS and not _hidden(p.relative_to(directory))
    )
    if not files:
        raise ConfigurationError(f"No articles in {directory}: expected {', '.join(FORMATS)} files")
    return _import(session, [read_article(p) for p in files], reset=reset)


def _hidden(relative: Path) -> bool:
    """.git, .obsidian and editors' swap files are not articles."""
    return any(part.startswith(".") for part in relative.parts)


def import_articles(
    session: Session, articles: Iterable[Mapping[str, Any]], *, source: str = "scenario"
) -> ImportReport:
    """Import articles given as ``{id, title, body}`` (a scenario's ``kb:`` entries); body is Markdown."""
    parsed = []
    for entry in articles:
        article_id = str(entry.get("id") or "").strip()
        if not article_id:
            raise ConfigurationError(f"A knowledge-base article needs an id: {dict(entry)!r:.120}")
        title = str(entry.get("title") or article_id).strip()
        parsed.append(Article(id=article_id, title=title, body=str(entry.get("body") or ""), source=source))
    return _import(session, parsed, reset=False)


def content_hash(article: Article) -> str:
    """Changes with the article, the chunking and the model: any of them means embedding again."""
    from shared.nlu.embeddings import MODEL_ID

    digest = hashlib.sha256()
    questions = json.dumps(article.questions, sort_keys=True)
    terms = json.dumps(article.terms, sort_keys=True)
    for part in (PIPELINE_VERSION, MODEL_ID, article.format, article.title, article.body, questions, terms):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _import(session: Session, articles: list[Article], *, reset: bool) -> ImportReport:
    started = time.perf_counter()
    require_tables(session)
    _refuse_duplicate_ids(articles)
    # Two imports at once (a deploy hook and an operator) would interleave deletes and inserts.
    session.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK)))
    if reset:
        session.execute(delete(KbArticle))
    hashes = {a.id: content_hash(a) for a in articles}
    found = session.execute(select(KbArticle.id, KbArticle.content_hash).where(KbArticle.id.in_(list(hashes))))
    known = {article_id: digest for article_id, digest in found}
    changed = [a for a in articles if known.get(a.id) != hashes[a.id]]
    chunked = [(a, chunk_article(a)) for a in changed]
    vectors = iter(embed_texts([embedding_text(a, s) for a, sections in chunked for s in sections]))
    report = ImportReport(skipped=len(articles) - len(changed))
    for article, sections in chunked:
        session.execute(delete(KbArticle).where(KbArticle.id == article.id))  # its sections cascade
        session.execute(
            insert(KbArticle).values(
                id=article.id,
                title=article.title,
                source=article.source,
                content_hash=hashes[article.id],
                terms={word: list(said) for word, said in article.terms.items()},
            )
        )
        if sections:
            rows = [_section_row(article, i, s, next(vectors)) for i, s in enumerate(sections)]
            session.connection().execute(_INSERT_SECTION, rows)
        report.articles += 1
        report.sections += len(sections)
    session.flush()
    # Searches in this process read the new terms: now, and once more after the commit, so a
    # search between the two does not keep the old ones for GLOSSARY_TTL_S.
    from agents.knowledge.retrieval import forget_glossaries  # retrieval imports this module

    forget_glossaries()
    after_commit(session, forget_glossaries)
    report.seconds = time.perf_counter() - started
    return report


def _refuse_duplicate_ids(articles: list[Article]) -> None:
    seen: dict[str, str] = {}
    for article in articles:
        if article.id in seen:
            raise ConfigurationError(
                f"Two articles have the id {article.id!r} ({seen[article.id]} and {article.source}): "
                "give each its own id in the front matter"
            )
        seen[article.id] = article.source


def _weighted(param: str, weight: str) -> Any:
    return func.setweight(
        func.to_tsvector(literal_column(f"'{TS_CONFIG}'::regconfig"), bindparam(param)), literal_column(f"'{weight}'")
    )


# Headings weigh most, the title next, body text least: "Export to CSV" should outrank a
# section that mentions CSV in passing.
_INSERT_SECTION = insert(KbSection).values(
    article_id=bindparam("article_id"),
    position=bindparam("position"),
    heading=bindparam("heading"),
    text=bindparam("text"),
    embedding=bindparam("embedding", type_=Vector()),
    questions=bindparam("questions"),
    search_vector=_weighted("tsv_heading", "A")
    .op("||")(_weighted("tsv_title", "B"))
    .op("||")(_weighted("tsv_text", "D")),
)


def _section_row(article: Article, position: int, section: Section, vector: list[float]) -> dict[str, Any]:
    return {
        "article_id": article.id,
        "position": position,
        "heading": section.heading,
        "text": section.text,
        "embedding": vector,
        "questions": list(section.questions),
        "tsv_heading": section.heading,
        "tsv_title": article.title,
        "tsv_text": section.text,
    }


def embed_texts(texts: list[str]) -> list[list[float]]:
    """Unit vectors for ``texts``, embedded in batches so a large import never holds one giant tensor."""
    # Imported here: onnxruntime loads only in the processes that use the knowledge base.
    from shared.nlu.embeddings import DIMENSION, EmbeddingModelUnavailable, default_encoder

    if DIMENSION != EMBEDDING_DIMENSIONS:
        raise ConfigurationError(
            f"The embedding model returns {DIMENSION} dimensions; the knowledge base stores "
            f"{EMBEDDING_DIMENSIONS}. Re-create the kb tables for another model."
        )
    try:
        matrix = default_encoder().embed_batch(texts, batch_size=EMBED_BATCH)
    except EmbeddingModelUnavailable as exc:
        raise ConfigurationError(f"The knowledge base cannot embed text: {exc}") from None
    return [[float(x) for x in row] for row in matrix]
