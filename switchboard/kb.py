"""``switchboard kb``: import, search and evaluate the knowledge base.

    switchboard kb import DIR [--reset]   import the articles under DIR (unchanged ones are skipped)
    switchboard kb search "question" [-k N]
    switchboard kb eval [--kb-dir DIR] [--questions FILE] [--database-url URL] [--fail-under X]
                                          retrieval accuracy and a kb_min_score (agents/knowledge/evaluate.py),
                                          in a throwaway embedded Postgres unless --database-url is given
    switchboard kb init                   create the KB tables after pgvector was installed late

With SWITCHBOARD_DATABASE_URL set these use that database; unset, they use the embedded
Postgres in the data folder, the one `switchboard run` starts (its running server when a
run is up, otherwise started for the command and stopped after it). Every failure the
operator can fix is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import evals
from agents.knowledge import evaluate, kb, retrieval
from shared.db import one_off_engine, one_off_session
from shared.errors import ConfigurationError
from shared.sandbox.loader import DEMO_KB
from shared.settings import get_settings
from switchboard.servers import database, throwaway_database

DEFAULT_QUESTIONS = Path(evals.__file__).resolve().parent / "data" / "kb_questions.yaml"


def _import(args: argparse.Namespace, url: str) -> int:
    with one_off_session(url) as session:
        report = kb.import_directory(session, args.directory, reset=args.reset)
        articles, sections = kb.counts(session)
    print(
        f"imported {report.articles} articles ({report.sections} sections), "
        f"skipped {report.skipped} unchanged, in {report.seconds:.1f}s; "
        f"the knowledge base holds {articles} articles, {sections} sections"
    )
    return 0


def _search(args: argparse.Namespace, url: str) -> int:
    with one_off_session(url) as session:
        hits = retrieval.search(session, args.query, args.k, mode=args.mode)
    if not hits:
        raise ConfigurationError(kb.KB_EMPTY)
    threshold = get_settings().kb_min_score
    for hit in hits:
        flag = "" if hit.score >= threshold else f"  (below kb_min_score {threshold})"
        where = f"{hit.title} > {hit.section}" if hit.section else hit.title
        print(f"{hit.score:.3f}  {hit.article_id}  {where}{flag}")
        print(textwrap.indent(textwrap.fill(hit.answer or hit.text, 100), "       "))
    return 0


# The revisions that create or change the KB tables; each does nothing without pgvector.
KB_REVISIONS = ("0003", "0017", "0018")


def _init(args: argparse.Namespace, url: str) -> int:
    """Run the KB migrations' upgrades again: they created nothing while pgvector was missing."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(url))
    revisions = [scripts.get_revision(r) for r in KB_REVISIONS]
    engine = one_off_engine(url)
    migration_log = logging.getLogger("switchboard.migrations")
    level = migration_log.level
    migration_log.setLevel(logging.ERROR)  # its warning would repeat the one line we print
    try:
        with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
            for revision in revisions:
                assert revision is not None and revision.module is not None
                revision.module.upgrade()
    finally:
        migration_log.setLevel(level)
        engine.dispose()
    with one_off_session(url) as session:
        kb.require_tables(session)
    print("the knowledge-base tables are ready: import articles with `switchboard kb import DIR`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard kb", description="Import, search and evaluate the KB.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import", help="import Markdown, HTML and text articles from a folder")
    p.add_argument("directory", type=Path)
    p.add_argument("--reset", action="store_true", help="delete every article first (also scenario ones)")
    p.set_defaults(fn=_import)
    p = sub.add_parser("search", help="print the best sections for a question")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=None, help="how many sections (default: kb_top_k)")
    p.add_argument("--mode", choices=["rerank", "hybrid", "dense"], default=retrieval.MODE)
    p.set_defaults(fn=_search)
    p = sub.add_parser("eval", help="measure retrieval on a corpus and a question set; recommend kb_min_score")
    p.add_argument("--kb-dir", type=Path, default=DEMO_KB, help="the corpus (default: shared/sandbox/kb)")
    p.add_argument(
        "--questions",
        type=Path,
        default=DEFAULT_QUESTIONS,
        help="the questions (default: evals/data/kb_questions.yaml)",
    )
    p.add_argument("--database-url", default=None, help="import into this database instead of a throwaway one")
    p.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when top-1 accuracy is below this")
    p.set_defaults(fn=None)
    p = sub.add_parser("init", help="create the KB tables in a database migrated before pgvector was installed")
    p.set_defaults(fn=_init)
    return parser


def _eval(args: argparse.Namespace) -> int:
    """The eval never touches an operator's knowledge base unless --database-url says so."""
    questions = evaluate.load_questions(args.questions)
    with nullcontext(args.database_url) if args.database_url else throwaway_database() as url:
        with one_off_session(url) as session:
            kb.import_directory(session, args.kb_dir)
        with one_off_session(url) as session:
            report = evaluate.evaluate(session, questions, kb_min_score=get_settings().kb_min_score)
    print(json.dumps(report, indent=2))
    return 1 if report["modes"][report["mode"]]["top1_accuracy"] < args.fail_under else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if getattr(args, "k", 0) is None:
        args.k = settings.kb_top_k
    try:
        if args.command == "eval":
            return _eval(args)
        with database(settings) as url:
            code: int = args.fn(args, url)
    except ConfigurationError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
