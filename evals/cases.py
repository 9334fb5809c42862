"""Scenario case files (evals/FORMAT.md): parsed and checked before anything runs.

A file holds one case (a mapping) or a list of them. Every error names the file, the
case and the field, because a case that silently means something else (a misspelt
``expect`` key that is never checked) is worse than one that does not load. The
fixture is checked here too, without a database, so a bad file stops the run before a
stack is started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shared.contracts import Customer, EscalationReason

Outcome = Literal["resolved", "clarify", "escalated"]
CASE_SUFFIXES = (".yaml", ".yml")
# The sections of the sandbox an expect.state may name (shared/sandbox/state.py reads them).
STATE_SECTIONS = ("refunds", "password_resets", "subscriptions", "customers")
# Sections whose records are matched by id; the others may also be matched by their fields.
BY_ID = ("subscriptions", "customers")


class CaseFileError(Exception):
    """A case file that cannot be run; the message names the file, the case and the field."""


def _text(value: object) -> object:
    # YAML reads `id: 1001` or a mention like `1990` as a number; both are text here.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
Record = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedState(_Strict):
    """What the sandbox must look like after the run; only what is named is checked."""

    refunds: list[Record] | None = None
    refunds_count: int | None = Field(default=None, ge=0)
    password_resets: list[Record] | None = None
    password_resets_count: int | None = Field(default=None, ge=0)
    subscriptions: list[Record] | None = None
    subscriptions_count: int | None = Field(default=None, ge=0)
    customers: list[Record] | None = None
    customers_count: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _records_are_identifiable(self) -> ExpectedState:
        for section in STATE_SECTIONS:
            for index, record in enumerate(self.records(section)):
                if not record:
                    raise ValueError(f"{section}[{index}] is empty: name the fields to compare")
                if section in BY_ID and "id" not in record:
                    raise ValueError(f"{section}[{index}] needs an id: {section} are matched by id")
        return self

    def records(self, section: str) -> list[Record]:
        listed: list[Record] | None = getattr(self, section)
        return listed or []

    def count(self, section: str) -> int | None:
        value: int | None = getattr(self, f"{section}_count")
        return value


Mention = Text | list[Text]


class Expect(_Strict):
    outcome: Outcome | None = None
    agents: list[Text] = Field(default_factory=list)
    escalation_reason: EscalationReason | None = None
    state: ExpectedState = Field(default_factory=ExpectedState)
    reply_mentions: list[Mention] = Field(default_factory=list)
    reply_excludes: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Expect:
        if self.escalation_reason is not None and self.outcome not in (None, "escalated"):
            raise ValueError(
                f"escalation_reason {self.escalation_reason.value!r} is given but outcome is {self.outcome!r}; "
                "a reason only goes with outcome: escalated"
            )
        for index, mention in enumerate(self.reply_mentions):
            if isinstance(mention, list) and not mention:
                raise ValueError(f"reply_mentions[{index}] is an empty list: give at least one alternative")
        return self

    @property
    def checks_reason(self) -> bool:
        """An explicit ``escalation_reason: null`` is a check too: no escalation reason."""
        return "escalation_reason" in self.model_fields_set


class KbEntry(_Strict):
    id: Text
    title: str = ""
    body: str = ""


class Case(_Strict):
    id: Text
    tags: list[Text] = Field(default_factory=list)
    customer: Customer
    fixture: dict[str, Any] = Field(default_factory=dict)
    kb: list[KbEntry] = Field(default_factory=list)
    policy: dict[str, Any] = Field(default_factory=dict)
    turns: list[Text] = Field(min_length=1)
    expect: Expect

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_empty(cls, data: Any) -> Any:
        # `fixture:`, `kb:` or `policy:` with nothing after them are YAML nulls.
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (v is None and k in ("fixture", "kb", "policy", "tags"))}
        return data


# --------------------------------------------------------------------------- loading


def _where(path: Path, index: int | None, raw: object) -> str:
    case_id = raw.get("id") if isinstance(raw, Mapping) else None
    if case_id is not None:
        return f"{path}: case {case_id}"
    return f"{path}: case [{index}]" if index is not None else str(path)


def _problems(exc: ValidationError) -> str:
    by_field: dict[str, list[str]] = {}
    for error in exc.errors():
        # Drop pydantic's union branch names ("str", "list[str]") from the location.
        loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "int")))]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling against evals/FORMAT.md)"
        by_field.setdefault(".".join(loc) or "case", []).append(message)
    # A value that fits no branch of a union gets one error per branch: say them as one.
    return "; ".join(
        f"{name}: " + " or ".join(m if i == 0 else m.removeprefix("Input should be ") for i, m in enumerate(messages))
        for name, messages in ((n, list(dict.fromkeys(ms))) for n, ms in by_field.items())
    )


def _check_fixture(case: Case, where: str, now: datetime) -> None:
    from shared.sandbox.fixtures import FixtureError, validate_fixture

    try:
        # Each case starts from an emptied sandbox: references must resolve within it.
        validate_fixture(case.fixture, now=now, customer=case.customer.model_dump(exclude_none=True))
    except FixtureError as exc:
        raise CaseFileError(f"{where}: fixture: {str(exc).removeprefix('fixture: ')}") from None


def parse_document(doc: Any, path: Path, now: datetime | None = None) -> list[Case]:
    """The cases of one parsed YAML document (a case or a list of cases)."""
    if doc is None:
        raise CaseFileError(f"{path}: the file is empty; it should hold a case or a list of cases")
    raws: list[Any]
    if isinstance(doc, Mapping):
        raws = [doc]
    elif isinstance(doc, list):
        raws = doc
    else:
        raise CaseFileError(f"{path}: expected a case (a mapping with id, customer, turns, expect) or a list of them")
    if not raws:
        raise CaseFileError(f"{path}: the list of cases is empty")
    now = now or datetime.now(UTC)
    cases = []
    for index, raw in enumerate(raws):
        where = _where(path, index if isinstance(doc, list) else None, raw)
        if not isinstance(raw, Mapping):
            raise CaseFileError(f"{where}: a case is a mapping with id, customer, turns and expect, not {raw!r:.60}")
        try:
            case = Case.model_validate(raw)
        except ValidationError as exc:
            raise CaseFileError(f"{where}: {_problems(exc)}") from None
        _check_fixture(case, where, now)
        cases.append(case)
    return cases


def case_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, with a folder standing for its *.yaml and *.yml files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CASE_SUFFIXES)
            if not found:
                raise CaseFileError(f"{path}: no case files (*.yaml, *.yml) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CaseFileError(f"{path}: no such file or folder")
    return files


def load_cases(paths: Iterable[Path], now: datetime | None = None) -> list[Case]:
    """Every case of every file, in order; ids must be unique across all of them."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for path in case_files(paths):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CaseFileError(f"{path}: not valid YAML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseFileError(f"{path}: cannot be read: {exc}") from None
        for case in parse_document(doc, path, now):
            if case.id in seen:
                raise CaseFileError(f"{path}: case {case.id}: the id is already used in {seen[case.id]}")
            seen[case.id] = str(path)
            cases.append(case)
    return cases


def select_cases(cases: list[Case], ids: list[str], tags: list[str]) -> list[Case]:
    """Only the cases named by id or carrying one of the tags (neither given: all)."""
    unknown = sorted(set(ids) - {c.id for c in cases})
    if unknown:
        raise CaseFileError(f"no case with id {', '.join(unknown)} in the files given")
    if not ids and not tags:
        return cases
    return [c for c in cases if c.id in ids or set(c.tags) & set(tags)]
