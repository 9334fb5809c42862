"""``switchboard kb``: import, search and evaluate the knowledge base.

    switchboard kb import DIR [--reset]   import the articles under DIR (unchanged ones are skipped)
    switchboard kb search "question" [-k N]
    switchboard kb eval [...]             retrieval accuracy and a kb_min_score (agents.knowledge.kb_eval)
    switchboard kb init                   create the KB tables after pgvector was installed late

With SWITCHBOARD_DATABASE_URL set these use that database; unset, they use the embedded
Postgres in the data folder, the one `switchboard run` starts (its running server when a
run is up, otherwise started for the command and stopped after it). Every failure the
operator can fix is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from agents.knowledge import kb
from shared.db import normalise_database_url
from shared.errors import ConfigurationError
from shared.settings import Settings, get_settings


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one of the data folder."""
    from orchestrator.servers import check_database

    if settings.database_url:
        check_database(settings.database_url)
        yield settings.database_url
        return
    from orchestrator.embedded import EmbeddedPostgres, lock_data_dir
    from shared.migrate import upgrade

    data_dir = settings.data_dir.expanduser().resolve()
    server = EmbeddedPostgres(data_dir / "postgres")
    try:
        lock = lock_data_dir(data_dir)
    except ConfigurationError:
        # `switchboard run` holds the folder: its Postgres is up and migrated. Adopt it
        # and leave it running.
        yield server.start()
        return
    try:
        url = server.start()
        upgrade(url)
        yield url
    finally:
        server.stop()
        lock.close()


@contextmanager
def unit_of_work(url: str) -> Iterator[Session]:
    engine = create_engine(normalise_database_url(url))
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def _import(args: argparse.Namespace, url: str) -> int:
    with unit_of_work(url) as session:
        report = kb.import_directory(session, args.directory, reset=args.reset)
        articles, sections = kb.counts(session)
    print(
        f"imported {report.articles} articles ({report.sections} sections), "
        f"skipped {report.skipped} unchanged, in {report.seconds:.1f}s; "
        f"the knowledge base holds {articles} articles, {sections} sections"
    )
    return 0


def _search(args: argparse.Namespace, url: str) -> int:
    with unit_of_work(url) as session:
        hits = kb.search(session, args.query, args.k, mode=args.mode)
    if not hits:
        raise ConfigurationError(kb.KB_EMPTY)
    threshold = get_settings().kb_min_score
    for hit in hits:
        flag = "" if hit.score >= threshold else f"  (below kb_min_score {threshold})"
        where = f"{hit.title} > {hit.section}" if hit.section else hit.title
        print(f"{hit.score:.3f}  {hit.article_id}  {where}{flag}")
        print(textwrap.indent(textwrap.shorten(hit.text, 300, placeholder=" …"), "       "))
    return 0


def _init(args: argparse.Namespace, url: str) -> int:
    """Run migration 0003's upgrade again: it created nothing while pgvector was missing."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    revision = ScriptDirectory.from_config(alembic_config(url)).get_revision("0003")
    assert revision is not None and revision.module is not None
    engine = create_engine(normalise_database_url(url))
    migration_log = logging.getLogger("switchboard.migrations")
    level = migration_log.level
    migration_log.setLevel(logging.ERROR)  # its warning would repeat the one line we print
    try:
        with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
            revision.module.upgrade()
    finally:
        migration_log.setLevel(level)
        engine.dispose()
    with unit_of_work(url) as session:
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
    p.add_argument("--mode", choices=["hybrid", "dense"], default="hybrid")
    p.set_defaults(fn=_search)
    p = sub.add_parser("eval", help="measure retrieval on the eval corpus", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p = sub.add_parser("init", help="create the KB tables in a database migrated before pgvector was installed")
    p.set_defaults(fn=_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:
        from agents.knowledge.kb_eval import main as eval_main

        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if getattr(args, "k", 0) is None:
        args.k = settings.kb_top_k
    try:
        with database(settings) as url:
            code: int = args.fn(args, url)
    except ConfigurationError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
