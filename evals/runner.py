"""Running one scenario case through the whole running system, as a helpdesk would.

The sandbox is reset and loaded with the case's fixture, policy and knowledge-base
articles straight in Postgres (that is the company's systems, not Switchboard); the
customer's messages go through the HTTP API as one conversation, each waiting for its
turn to finish before the next is posted; the sandbox is read back afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from evals.cases import Case, KbEntry
from orchestrator.keys import create_key, revoke_key
from shared.contracts import Role, TurnState
from shared.db import session_scope
from shared.errors import ConfigurationError
from shared.models import AgentRun, Conversation, Turn

SOURCE = "eval"  # the helpdesk name the eval posts as; replies to it are not delivered anywhere
KB_SOURCE = "eval-case"  # what a case's own kb: articles are imported as, so leftovers can be found
# Under the API key's default rate limit (600 requests a minute) while a turn is awaited;
# latency is the server's own timing, so the interval does not skew it.
POLL_S = 0.15
# How long a 429 or 503 is waited out before it counts as the API's answer.
RETRY_FOR_S = 60.0


@dataclass
class CaseRun:
    """What one case did: the last turn as the API shows it and the sandbox around the run."""

    case: Case
    conversation_id: str | None = None
    final_turn: dict[str, Any] | None = None
    latency_s: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    brains: set[str] = field(default_factory=set)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    input_error: bool = False  # the case itself could not be loaded (exit code 2)


class KnowledgeBase:
    """The KB corpus, imported once per run, and each case's own articles around it."""

    def __init__(self, corpus: Path | None) -> None:
        self.corpus = corpus

    @property
    def enabled(self) -> bool:
        return self.corpus is not None

    def import_corpus(self) -> str:
        """Import the corpus (unchanged articles are skipped) and drop a crashed run's case articles."""
        if self.corpus is None:
            return "knowledge base: not imported (--no-kb)"
        from agents.knowledge.kb import KbArticle, import_directory

        with _kb_errors(), session_scope() as session:
            session.execute(delete(KbArticle).where(KbArticle.source == KB_SOURCE))
            report = import_directory(session, self.corpus)
        return (
            f"knowledge base: {self.corpus} ({report.articles} articles embedded, "
            f"{report.skipped} unchanged, {report.seconds:.1f}s)"
        )

    def add(self, session: Session, entries: list[KbEntry]) -> bool:
        """Import a case's articles; say whether one replaced an article of the corpus."""
        from agents.knowledge.kb import KbArticle, import_articles

        ids = [e.id for e in entries]
        shadowed = session.scalar(select(KbArticle.id).where(KbArticle.id.in_(ids)).limit(1)) is not None
        with _kb_errors():
            import_articles(session, [e.model_dump() for e in entries], source=KB_SOURCE)
        return bool(shadowed)

    def remove(self, entries: list[KbEntry], shadowed: bool) -> None:
        from agents.knowledge.kb import KbArticle, import_directory

        with _kb_errors(), session_scope() as session:
            session.execute(delete(KbArticle).where(KbArticle.id.in_([e.id for e in entries])))
            if shadowed and self.corpus is not None:
                import_directory(session, self.corpus)  # puts back what the case replaced


@contextmanager
def _kb_errors() -> Iterator[None]:
    """A KB that cannot work here (no embedding model installed) is a setup problem, not a failure."""
    try:
        yield
    except ImportError as exc:
        raise ConfigurationError(
            f"The knowledge base cannot be imported here ({exc}); run with --no-kb to evaluate without it"
        ) from None


class CaseRunner:
    def __init__(self, api_url: str, kb: KnowledgeBase, *, turn_timeout_s: float = 30.0, settle_s: float = 2.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.kb = kb
        self.turn_timeout_s = turn_timeout_s
        self.settle_s = settle_s
        # The eval calls the API as a helpdesk of its own source, with a key it makes in the
        # stack's database for this run and revokes at the end (it resets the sandbox there too).
        with session_scope() as s:
            key, token = create_key(
                s, role=Role.helpdesk, source=SOURCE, name="switchboard eval (this run)", by="switchboard eval"
            )
        self._key_id = key.id
        self.http = httpx.Client(base_url=self.api_url, timeout=10.0, headers={"Authorization": f"Bearer {token}"})
        self._database_checked = False

    def close(self) -> None:
        self.http.close()
        with session_scope() as s:
            revoke_key(s, self._key_id, by="switchboard eval")

    def run(self, case: Case) -> CaseRun:
        run = CaseRun(case)
        if case.kb and not self.kb.enabled:
            run.error = "the case adds kb: articles but the knowledge base is off (--no-kb)"
            return run
        from shared.sandbox.fixtures import FixtureError

        try:
            shadowed = self._prepare(case, run)
        except FixtureError as exc:
            run.error, run.input_error = f"fixture: {exc}", True
            return run
        try:
            self._converse(case, run)
            if run.conversation_id is not None:
                self._settle(run.conversation_id)
                self._account(run)
        finally:
            run.after = self._snapshot()
            if case.kb:
                self.kb.remove(case.kb, shadowed)
        return run

    # ----------------------------------------------------------------------- the sandbox

    def _prepare(self, case: Case, run: CaseRun) -> bool:
        from shared.sandbox.fixtures import load_fixture, reset_sandbox, set_policy, snapshot

        shadowed = False
        with session_scope() as session:
            reset_sandbox(session)
            set_policy(session, case.policy)
            customer = case.customer.model_dump(exclude_none=True)
            # Relative dates count from the moment the case runs, not from when it was written.
            load_fixture(session, case.fixture, customer=customer, now=datetime.now(UTC))
            if case.kb:
                shadowed = self.kb.add(session, case.kb)
            run.before = snapshot(session)
        return shadowed

    @staticmethod
    def _snapshot() -> dict[str, Any]:
        from shared.sandbox.fixtures import snapshot

        with session_scope() as session:
            return snapshot(session)

    # ----------------------------------------------------------------------- the conversation

    def _converse(self, case: Case, run: CaseRun) -> None:
        external_id = f"{case.id[:200]}-{uuid.uuid4().hex[:8]}"
        for number, body in enumerate(case.turns, start=1):
            if number == 1:
                path = "/v1/tickets"
                payload: dict[str, Any] = {
                    "source": SOURCE,
                    "external_id": external_id,
                    "channel": "chat",
                    "customer": case.customer.model_dump(exclude_none=True),
                    "subject": "",
                    "body": body,
                }
            else:
                path = f"/v1/conversations/{run.conversation_id}/messages"
                payload = {"body": body, "external_id": f"{external_id}-{number}"}
            posted = time.monotonic()
            try:
                response = self._request("POST", path, json=payload)
            except httpx.HTTPError as exc:
                run.error = f"turn {number}: the API at {self.api_url} did not answer ({exc})"
                return
            if response.status_code != 202:
                run.error = f"turn {number}: POST {path} answered {response.status_code}: {_detail(response)}"
                return
            accepted = response.json()
            run.conversation_id = accepted["conversation_id"]
            self._check_database(accepted["conversation_id"])
            turn = self._wait_done(accepted["conversation_id"], accepted["turn_id"], number, run)
            if turn is None:
                return
            if number == len(case.turns):
                run.final_turn = turn
                total_ms = (turn.get("timings_ms") or {}).get("total")
                # The server's own timing (created → merged) is free of our polling interval.
                run.latency_s = total_ms / 1000 if total_ms is not None else time.monotonic() - posted

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a 429 or 503 is waited out as its Retry-After says (a long eval run
        outpaces the key's rate limit), up to RETRY_FOR_S, then the refusal is returned."""
        give_up = time.monotonic() + RETRY_FOR_S
        while True:
            response = self.http.request(method, path, **kwargs)
            if response.status_code not in (429, 503) or time.monotonic() >= give_up:
                return response
            try:
                wait = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.1), 10.0, max(0.0, give_up - time.monotonic())))

    def _wait_done(self, conversation_id: str, turn_id: str, number: int, run: CaseRun) -> dict[str, Any] | None:
        end = time.monotonic() + self.turn_timeout_s
        state = "unknown"
        while True:
            try:
                view = self._request("GET", f"/v1/conversations/{conversation_id}").json()
                turn = next((t for t in view.get("turns", []) if t.get("id") == turn_id), None)
            except (httpx.HTTPError, ValueError) as exc:
                run.error = f"turn {number}: the API at {self.api_url} did not answer ({exc})"
                return None
            if turn is not None:
                state = turn.get("state", state)
                if state == TurnState.done:
                    return dict(turn)
            if time.monotonic() >= end:
                run.error = f"turn {number} did not finish within {self.turn_timeout_s:g}s (state {state})"
                return None
            time.sleep(POLL_S)

    def _settle(self, conversation_id: str) -> None:
        """Give late agents a moment to record their result: a late refund is still a refund."""
        end = time.monotonic() + self.settle_s
        while time.monotonic() < end:
            try:
                view = self._request("GET", f"/v1/conversations/{conversation_id}").json()
            except (httpx.HTTPError, ValueError):
                return
            # The view shows an agent with no recorded run without its confidence.
            missing = [a for t in view.get("turns", []) for a in t.get("agents", []) if "confidence" not in a]
            if not missing:
                return
            time.sleep(POLL_S * 4)

    def _check_database(self, conversation_id: str) -> None:
        """The API must write where this eval loads the sandbox, or nothing it judges is real."""
        if self._database_checked:
            return
        with session_scope() as session:
            found = session.get(Conversation, conversation_id) is not None
        if not found:
            raise ConfigurationError(
                f"The API at {self.api_url} stores conversations in another database than the one this eval "
                "loads the sandbox into: set SWITCHBOARD_DATABASE_URL to the stack's database"
            )
        self._database_checked = True

    @staticmethod
    def _account(run: CaseRun) -> None:
        """Tokens, cost and brains of every agent run of the conversation (not in the API's view)."""
        query = (
            select(AgentRun.result)
            .join(Turn, Turn.id == AgentRun.turn_id)
            .where(Turn.conversation_id == run.conversation_id)
        )
        with session_scope() as session:
            for result in session.scalars(query):
                run.tokens += int(result.get("tokens") or 0)
                run.cost_usd += float(result.get("cost") or 0.0)
                if result.get("brain"):
                    run.brains.add(str(result["brain"]))


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body))[:300] if isinstance(body, dict) else str(body)[:300]
