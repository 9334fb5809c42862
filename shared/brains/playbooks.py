"""Playbooks as data: per intent, the tools in order, the checks, and what to say.

A playbook is a list of steps (YAML, one file per agent):

- ``call: TOOL`` with ``args`` (templates) and ``as: NAME`` binds the tool's output; an
  error is handled by ``on: {policy|not_found|invalid|backend|error: HANDLER}`` (default:
  escalate ``tool_failure`` for a critical tool, else ask the customer for what is missing);
- ``pick: PICKER`` ``from: NAME`` ``as: NAME`` ``none: HANDLER`` chooses a record (the
  duplicate payment, the payment the customer means, ...);
- ``when: PREDICATE`` ``args: [NAME, ...]`` ``then: HANDLER`` stops with the handler when
  the predicate holds (older than the refund window, over the ceiling, ...);
- a HANDLER or a final step is ``reply: TEMPLATE`` | ``ask: TEMPLATE`` |
  ``escalate: REASON`` (with an optional ``detail`` for the human, ``suggest`` as a draft
  reply for the human, and ``tell``: what the customer hears meanwhile).

The interpreter is re-run from the top on every decision with the tool calls made so far,
so it needs no state of its own: the n-th ``call`` step is answered by the n-th call in
the history. Templates read ``{name.field}`` with optional filters: ``|money:CURRENCY_FIELD``
(an amount in the customer's locale, "$49.00", "49,00 $US") and ``|date`` (the customer's
calendar day in their time zone, written for their locale: "3 janvier 2027"). A ``tell`` may be
one text, or one per language (``{en: …, es: …}``); the customer reads theirs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.brains import CallTool, Decision, Finish
from shared.contracts import AgentStatus, EscalationReason, Fact, ToolCallRecord
from shared.i18n import babel_locale, format_day, format_money
from shared.tools import Tool

Picker = Callable[[Any, "Scope"], Any]
Predicate = Callable[..., bool]

_FIELD = re.compile(r"\{([a-zA-Z_][\w.]*)(?:\|(\w+)(?::([a-zA-Z_][\w.]*))?)?\}")
HANDLER_KEYS = ("reply", "ask", "escalate")


class PlaybookError(ValueError):
    """A playbook file that cannot run: the message names the file, intent and step."""


@dataclass
class Scope:
    """What templates, pickers and predicates can read."""

    values: dict[str, Any]
    settings: Mapping[str, Any]

    def get(self, path: str) -> Any:
        head, *rest = path.split(".")
        value: Any = self.values.get(head, self.settings.get(head))
        for part in rest:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = getattr(value, part, None)
        return value

    def money(self, value: Any, currency: Any, language: str = "en") -> str:
        """An amount as the customer writes it, in text of ``language`` ("$49.00", "49,00 US$")."""
        return format_money(value, str(currency) if currency else None, self._locale(language))

    def day(self, value: Any, language: str = "en") -> str:
        """A date or timestamp as the customer's calendar day, in text of ``language``."""
        return format_day(value, self._locale(language), (self.get("customer") or {}).get("timezone"))

    def _locale(self, language: str) -> Any:
        return babel_locale((self.get("customer") or {}).get("locale"), language)


def render(template: str, scope: Scope, language: str = "en") -> str:
    """Fill ``template``, a text in ``language`` (the playbooks are written in English)."""

    def field(m: re.Match[str]) -> str:
        value = scope.get(m.group(1))
        return _filter(value, m.group(2), scope.get(m.group(3)) if m.group(3) else None, scope, language)

    return _FIELD.sub(field, template)


def _filter(value: Any, name: str | None, argument: Any, scope: Scope, language: str) -> str:
    if value is None:
        return ""
    if name == "money":
        return scope.money(value, argument, language)
    if name == "date":
        return scope.day(value, language)
    return str(value)


def localized(text: Any, language: str) -> str | None:
    """A ``tell``'s text for ``language``: the one text, or that language's entry; None for a
    per-language ``tell`` without that language."""
    if isinstance(text, Mapping):
        chosen = text.get(language)
        return str(chosen) if chosen else None
    return str(text)


@dataclass(frozen=True)
class Playbook:
    intent: str
    steps: list[dict[str, Any]]


def load_playbooks(
    path: Path, pickers: Mapping[str, Picker], predicates: Mapping[str, Predicate]
) -> dict[str, Playbook]:
    """Load and check a playbook file, so a typo fails at start-up, not mid-turn."""
    raw = yaml.safe_load(path.read_text()) or {}
    books: dict[str, Playbook] = {}
    for intent, steps in raw.items():
        if not isinstance(steps, list) or not steps:
            raise PlaybookError(f"{path}: playbook {intent!r} needs a list of steps")
        for i, step in enumerate(steps):
            where = f"{path}: {intent} step {i + 1}"
            if "pick" in step and step["pick"] not in pickers:
                raise PlaybookError(f"{where}: unknown picker {step['pick']!r}; known: {sorted(pickers)}")
            if "when" in step and step["when"] not in predicates:
                raise PlaybookError(f"{where}: unknown predicate {step['when']!r}; known: {sorted(predicates)}")
            kinds = [k for k in ("call", "pick", "when", *HANDLER_KEYS) if k in step]
            if len(kinds) != 1:
                raise PlaybookError(f"{where}: a step is exactly one of call/pick/when/reply/ask/escalate, got {kinds}")
            if "escalate" in step:
                EscalationReason(step["escalate"])
        books[intent] = Playbook(intent=intent, steps=steps)
    return books


@dataclass(frozen=True)
class Run:
    """One interpretation of a playbook against the calls made so far."""

    playbook: Playbook
    tools: Mapping[str, Tool]
    pickers: Mapping[str, Picker]
    predicates: Mapping[str, Predicate]
    confidence: float
    act_threshold: float = 0.0

    def next(self, history: list[ToolCallRecord], scope: Scope) -> Decision:
        return self.step(history, scope)[0]

    def step(
        self, history: list[ToolCallRecord], scope: Scope, known: Mapping[str, ToolCallRecord] | None = None
    ) -> tuple[Decision, int]:
        """The next decision, and how many calls of ``history`` this playbook has used: the
        calls after those belong to whatever runs next (the next part of the message).
        ``known``: reads already made this turn (by ``call_signature``), reused, not repeated."""
        used = 0
        for step in self.playbook.steps:
            if "call" in step:
                args = {k: _arg(v, scope) for k, v in (step.get("args") or {}).items()}
                called = {k: v for k, v in args.items() if v is not None}
                tool = self.tools.get(step["call"])
                reused = (known or {}).get(call_signature(step["call"], called))
                if reused is not None and tool is not None and tool.side_effect == "read":
                    if "as" in step:
                        scope.values[step["as"]] = reused.output
                    continue
                done = history[used] if used < len(history) else None
                if done is None:
                    if tool is not None and tool.side_effect != "read" and self.confidence < self.act_threshold:
                        return Finish(
                            AgentStatus.escalate,
                            confidence=self.confidence,
                            escalation_reason=EscalationReason.low_confidence,
                            detail=f"not sure enough ({self.confidence:.2f}) that the customer asked for "
                            f"{self.playbook.intent} to {step['call']}",
                        ), used
                    return CallTool(tool=step["call"], arguments=called), used
                used += 1
                if done.error is not None:
                    return self._on_error(step, done, history[:used], scope), used
                if "as" in step:
                    scope.values[step["as"]] = done.output
            elif "pick" in step:
                chosen = self.pickers[step["pick"]](scope.get(step.get("from", "")), scope)
                if chosen is None:
                    return self._handle(step.get("none") or {"escalate": "low_confidence"}, history[:used], scope), used
                scope.values[step.get("as", step["pick"])] = chosen
            elif "when" in step:
                values = [scope.get(a) for a in step.get("args", [])]
                if self.predicates[step["when"]](*values, scope=scope):
                    return self._handle(step["then"], history[:used], scope), used
            else:
                return self._handle(step, history[:used], scope), used
        return Finish(
            status=AgentStatus.not_applicable, detail=f"playbook {self.playbook.intent} ended without an answer"
        ), used

    def _on_error(
        self, step: dict[str, Any], call: ToolCallRecord, history: list[ToolCallRecord], scope: Scope
    ) -> Decision:
        handlers: dict[str, Any] = step.get("on") or {}
        scope.values["error"] = call.error
        handler = handlers.get(call.error_kind or "error") or handlers.get("error")
        if handler is None:
            # shadow: a change the turn may not make (shadow mode) is what a human decides on
            default = {"policy": "policy", "shadow": "shadow"}.get(call.error_kind or "", "tool_failure")
            handler = {"escalate": default}
        return self._handle(handler, history, scope, detail=call.error)

    def _handle(
        self, handler: dict[str, Any], history: list[ToolCallRecord], scope: Scope, detail: str | None = None
    ) -> Finish:
        ok = [c for c in history if c.error is None]
        facts = [Fact(statement=_fact(c), call_id=c.call_id) for c in ok]
        actions = [c.call_id for c in ok if self.tools.get(c.tool) and self.tools[c.tool].side_effect != "read"]
        if "reply" in handler:
            return Finish(
                AgentStatus.answered, render(handler["reply"], scope).strip(), self.confidence, facts, actions
            )
        if "ask" in handler:
            return Finish(
                AgentStatus.needs_info, render(handler["ask"], scope).strip(), self.confidence, facts, actions
            )
        reason = EscalationReason(handler["escalate"])
        why = render(handler["detail"], scope) if "detail" in handler else detail
        return Finish(
            AgentStatus.escalate,
            render(handler["suggest"], scope).strip() if "suggest" in handler else None,
            self.confidence,
            facts,
            actions,
            escalation_reason=reason,
            detail=why or f"playbook {self.playbook.intent}: {reason.value}",
            customer_note=_tell_of(handler, scope),
        )


def _tell_of(handler: Mapping[str, Any], scope: Scope) -> str | None:
    """What the customer hears while a person takes over, in their language.

    A ``tell`` written in English only is not sent to a customer who writes another language:
    they get the holding reply in theirs (the merge's) rather than a text they may not read.
    """
    if "tell" not in handler:
        return None
    language = str(scope.get("language") or "en")
    tell = handler["tell"]
    if not isinstance(tell, Mapping) and language != "en":
        return None
    text = localized(tell, language)
    return render(text, scope, language).strip() if text else None


def call_signature(tool: str, arguments: Mapping[str, Any]) -> str:
    """Two calls of one tool with the same arguments have the same signature (agents.base)."""
    return tool + json.dumps(dict(arguments), sort_keys=True, default=str)


def _arg(value: Any, scope: Scope) -> Any:
    if isinstance(value, str):
        whole = _FIELD.fullmatch(value)
        if whole and whole.group(2) is None:
            return scope.get(whole.group(1))  # keep the type: numbers stay numbers
        return render(value, scope)
    return value


def _fact(call: ToolCallRecord) -> str:
    args = ", ".join(f"{k}={v}" for k, v in call.arguments.items() if k != "query")
    return f"{call.tool}({args}) succeeded"
