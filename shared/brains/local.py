"""The local brain: no model server, no cost.

It understands a message with the local intent engine (a small embedding model plus a
classifier trained on every agent's labelled examples) and entity patterns, then runs
the owning agent's playbook as written. Other agents answer ``not_applicable``. It is the
default brain, and the fallback of the OpenAI brain when its endpoint is down.

Slots carry over turns: when the latest message only answers the question asked before
("the one from Monday", "pay_3002"), the intent of the message that led to the question
is kept and the new entities are added to it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.brains import AgentProfile, AgentView, Decision, Finish
from shared.brains.playbooks import Playbook, Run, Scope, load_playbooks
from shared.brains.router import IntentRouter, build_router
from shared.contracts import AgentStatus, AgentTask
from shared.settings import Settings

# Threats of legal action, chargebacks and abuse go to a human whatever else the message
# asks (POLICY.md rule 9); a keyword backstop, since one sentence of it can hide in a
# message the classifier reads as something else.
LEGAL_OR_ABUSE = re.compile(
    r"\b(lawyers?|attorneys?|solicitors?|lawsuit|sue|suing|legal action|claim for damages|small claims|"
    r"court|chargebacks?|dispute (the|this|that) (charge|payment)|report(ing)? you to|"
    r"abogad[oa]s?|demanda(r|remos)?|avocats?|poursuites?|anwalt|anwältin|klage|verklagen|"
    r"idiots?|morons?|imbeciles?|scammers?|fuck\w*|you are useless|you're useless)\b",
    re.IGNORECASE,
)
# Messages that carry no request of their own: they continue the previous one.
CONTINUATIONS = {"greeting", "vague"}
# Below this, the message is "something else": the knowledge agent tries the knowledge base.
UNKNOWN_BELOW = 0.30
FALLBACK_AGENT, FALLBACK_INTENT = "knowledge", "product_question"


@dataclass(frozen=True)
class Understanding:
    text: str
    intent: str
    confidence: float
    entities: dict[str, Any] = field(default_factory=dict)
    carried_over: bool = False


class LocalBrain:
    name = "local"

    def __init__(
        self,
        settings: Settings,
        profiles: Mapping[str, AgentProfile] | None = None,
        router: IntentRouter | None = None,
    ) -> None:
        self.settings = settings
        self.profiles = dict(profiles or {})
        self.owner = {intent: agent for agent, p in self.profiles.items() for intent in p.intents}
        self.playbooks: dict[str, dict[str, Playbook]] = {
            agent: load_playbooks(p.playbooks_file, p.pickers, p.predicates) for agent, p in self.profiles.items()
        }
        self._router: IntentRouter | None = router
        self._router_lock = threading.Lock()
        self._understood: OrderedDict[str, Understanding] = OrderedDict()

    # ------------------------------------------------------------------ understanding

    @property
    def router(self) -> IntentRouter:
        with self._router_lock:
            if self._router is None:
                examples = {intent: list(ex) for p in self.profiles.values() for intent, ex in p.intents.items()}
                self._router = build_router(examples, self.settings.cache_dir or self.settings.data_dir / "cache")
            return self._router

    def warm_up(self) -> None:
        """Train or load the classifier and run the embedding model once."""
        self.router.classify("warm up")

    def understand(self, task: AgentTask) -> Understanding:
        """Classify the turn once per process, whichever agent asks first."""
        cached = self._understood.get(task.turn_id)
        if cached is not None:
            return cached
        customers = [m.body for m in task.window if m.role == "customer"]
        text = customers[-1] if customers else ""
        now = datetime.now(UTC)
        intent, confidence = self.router.classify(text)
        if LEGAL_OR_ABUSE.search(text):
            intent, confidence = "legal_threat", max(confidence, 0.95)
        entities = self.router.entities(text, now=now, timezone=task.customer.timezone)
        understanding = Understanding(text, intent, confidence, entities)
        asked = len(task.window) >= 2 and task.window[-2].role == "assistant"
        if (intent in CONTINUATIONS or confidence < UNKNOWN_BELOW) and len(customers) > 1 and asked:
            before, before_conf = self.router.classify(customers[-2])
            if before not in CONTINUATIONS and before_conf >= UNKNOWN_BELOW:
                merged = {**self.router.entities(customers[-2], now=now, timezone=task.customer.timezone), **entities}
                understanding = Understanding(text, before, before_conf, merged, carried_over=True)
        self._understood[task.turn_id] = understanding
        while len(self._understood) > 512:
            self._understood.popitem(last=False)
        return understanding

    # ------------------------------------------------------------------ deciding

    def decide(self, view: AgentView) -> Decision:
        agent = view.task.agent
        profile = self.profiles.get(agent)
        if profile is None:
            return Finish(AgentStatus.not_applicable, detail=f"no playbooks for agent {agent}")
        u = self.understand(view.task)
        intent = u.intent
        if u.confidence < UNKNOWN_BELOW:
            # Not recognisably anyone's: only the knowledge base may still know the answer.
            if agent != FALLBACK_AGENT:
                return Finish(AgentStatus.not_applicable, detail=f"unrecognised message ({u.confidence:.2f})")
            intent = FALLBACK_INTENT
        elif self.owner.get(intent) != agent:
            return Finish(AgentStatus.not_applicable, detail=f"intent {intent} ({u.confidence:.2f}) is not mine")
        playbook = self.playbooks[agent].get(intent)
        if playbook is None:
            return Finish(AgentStatus.not_applicable, detail=f"no playbook for {intent}")
        tools = {t.name: t for t in view.tools}
        scope = Scope(
            values={
                "text": u.text,
                "intent": intent,
                "entities": u.entities,
                "customer": view.task.customer.model_dump(),
                "first_name": (view.task.customer.name or "").split(" ")[0] or "there",
                "now": time.time(),
            },
            settings={
                "max_auto_refund": self.settings.max_auto_refund,
                "refund_window_days": self.settings.refund_window_days,
                "kb_min_score": self.settings.kb_min_score,
            },
        )
        run = Run(
            playbook,
            tools=tools,
            pickers=profile.pickers,
            predicates=profile.predicates,
            confidence=round(u.confidence, 3),
            # Never move money or change an account on a guess: below this, a human decides.
            act_threshold=self.settings.confidence_threshold,
        )
        return run.next(view.history, scope)
