"""``switchboard eval FILE... [--json] [--brain local|openai]``: scenario cases through the whole system.

Each case (evals/FORMAT.md) runs against the sandbox store loaded from its own fixture:
its messages go through the HTTP API as one conversation, and the last turn and the
sandbox are judged against the case's ``expect``. Progress goes to stderr; the table
goes to stdout, or to stderr with ``--json``, which prints one JSON object on stdout.

Exit code: 0 when every case passed, 1 when one did not, 2 for bad input (a case file
that does not parse, a fixture that does not load, a stack that cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from evals.cases import Case, CaseFileError, load_cases, select_cases
from evals.report import CaseResult, Progress, report_json, result_of, text_report
from evals.runner import CaseRun, CaseRunner, KnowledgeBase
from evals.stack import EvalStack, StackRuntime, eval_stack
from shared.errors import ConfigurationError
from shared.sandbox.loader import DEMO_KB
from shared.settings import Settings

# The sandbox company's corpus (the one FORMAT.md puts beside the public examples, shipped
# in the repo); used when no kb/ folder sits beside the case files and --kb is not given.
DEFAULT_KB = DEMO_KB
BRAINS = ("local", "openai")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard eval", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("files", nargs="+", type=Path, help="case files (YAML), or folders of them")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout (the table goes to stderr)")
    parser.add_argument(
        "--brain", choices=BRAINS, default=None, help="the brain of the stack the eval starts (refused if one runs)"
    )
    parser.add_argument("--kb", type=Path, default=None, help="the knowledge-base corpus to import (default: see docs)")
    parser.add_argument("--no-kb", action="store_true", help="do not import a knowledge base (no pgvector here)")
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="only this case (repeatable)")
    parser.add_argument("--tag", action="append", default=[], help="only cases with this tag (repeatable)")
    parser.add_argument("--turn-timeout", type=float, default=30.0, metavar="S", help="per turn (default 30)")
    parser.add_argument("--concurrency", type=int, default=None, help="processes per worker of a stack it starts")
    return parser


def main(argv: Sequence[str], runtime: StackRuntime) -> int:
    args = _parser().parse_args(list(argv))
    try:
        cases = select_cases(load_cases(args.files), args.case, args.tag)
        if not cases:
            raise CaseFileError(f"no case has the tag {', '.join(args.tag)}")
        kb = KnowledgeBase(None if args.no_kb else kb_corpus(args.kb, args.files))
    except CaseFileError as exc:
        return _fail(str(exc))
    try:
        results = _evaluate(cases, kb, args, runtime)
    except ConfigurationError as exc:
        return _fail(str(exc))
    report = text_report(results)
    if args.json:
        print(report, file=sys.stderr)
        print(json.dumps(report_json(results), indent=2))
    else:
        print(report)
    if any(r.input_error for r in results):
        return 2
    return 0 if all(r.passed for r in results) else 1


def kb_corpus(given: Path | None, files: Sequence[Path]) -> Path:
    """--kb, else the kb/ folder beside the first case file that has one, else DEFAULT_KB."""
    if given is not None:
        if not given.is_dir():
            raise CaseFileError(f"--kb {given}: not a folder of articles")
        return given
    for path in files:
        beside = (path if path.is_dir() else path.parent) / "kb"
        if beside.is_dir():
            return beside
    if DEFAULT_KB.is_dir():
        return DEFAULT_KB
    raise CaseFileError("no knowledge-base corpus: no kb/ folder beside the case files; give --kb DIR or --no-kb")


def _evaluate(
    cases: list[Case], kb: KnowledgeBase, args: argparse.Namespace, runtime: StackRuntime
) -> list[CaseResult]:
    with eval_stack(Settings(), runtime, brain=args.brain, concurrency=args.concurrency) as stack:
        print(f"switchboard eval: {kb.import_corpus()}", file=sys.stderr)
        runner = CaseRunner(stack.api_url, kb, turn_timeout_s=args.turn_timeout)
        progress = Progress(len(cases), sys.stderr)
        results: list[CaseResult] = []
        brain_checked = stack.started or args.brain is None
        try:
            for case in cases:
                death = stack.problem()
                if death is not None:
                    run = CaseRun(case, error=f"not run: {death}")
                else:
                    progress.start(case.id)
                    run = runner.run(case)
                    if not brain_checked and run.brains:
                        _check_brain(stack, args.brain, run.brains)
                        brain_checked = True
                result = result_of(run)
                results.append(result)
                progress.finish(result)
        finally:
            runner.close()
        return results


def _check_brain(stack: EvalStack, brain: str, used: set[str]) -> None:
    """--brain cannot change a stack the eval did not start: refuse rather than mislabel the results."""
    if not any(name == brain or name.startswith(f"{brain}:") for name in used):
        raise ConfigurationError(
            f"--brain {brain}: the stack already running at {stack.api_url} answers with "
            f"{', '.join(sorted(used))}. Stop it so that the eval starts its own, or run without --brain"
        )


def _fail(message: str) -> int:
    print(f"switchboard eval: {message}", file=sys.stderr)
    return 2
