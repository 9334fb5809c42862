"""Tools: one tool, one job, a typed input, a declared owner.

``function_tool`` turns ``fn(ctx, args: ArgsModel)`` into a ``Tool`` value; an agent is
built with its list of tools (``Agent(name, tools=[...])``), so nothing is registered by
importing a module. The JSON schema a model sees is generated from the pydantic argument
model, never written twice. Permissions are enforced where tools execute (``ToolRegistry.
execute``), not in prompts: an agent can only run tools that name it as an owner.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import PolicyViolation, ToolError
from shared.guardrails.tool_output import screen_output
from shared.metrics import TOOL_OUTPUT_WITHHELD

log = logging.getLogger(__name__)

SideEffect = Literal["read", "write", "money"]
MAX_OUTPUT_CHARS = 4000


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are an error the model can fix."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the turn it runs in."""

    turn_id: str
    conversation_id: str
    agent: str
    customer_id: str
    # Customer identity is (tenant, customer_id): a tool reads and changes the records of
    # that customer of that company only. ``source`` is the helpdesk the ticket came from.
    tenant: str
    source: str
    customer_email: str | None = None
    # Shadow mode: a tool that would change something refuses (nothing is changed); reads run.
    dry_run: bool = False
    # The agent's own deadline (unix time): a tool that waits or tries again stays inside it.
    deadline_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ToolFn = Callable[[ToolContext, Any], Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[ToolArgs]
    fn: ToolFn
    owners: frozenset[str]
    side_effect: SideEffect = "read"
    # A critical tool's failure means the agent cannot answer safely: the turn escalates.
    critical: bool = False

    def schema(self) -> dict[str, Any]:
        """An OpenAI strict function-tool schema."""
        params = self.args.model_json_schema()
        params["additionalProperties"] = False
        params.setdefault("required", list(params.get("properties", {})))
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params, "strict": True},
        }


def function_tool(
    *,
    owners: tuple[str, ...],
    side_effect: SideEffect = "read",
    critical: bool = False,
    name: str | None = None,
) -> Callable[[ToolFn], Tool]:
    """Make ``fn(ctx, args: ArgsModel)`` a tool; its docstring is what the model reads."""

    def decorate(fn: ToolFn) -> Tool:
        args_model = fn.__annotations__.get("args")
        if isinstance(args_model, str):
            args_model = fn.__globals__.get(args_model)
        if not (isinstance(args_model, type) and issubclass(args_model, ToolArgs)):
            raise TypeError(f"{fn.__name__}: annotate `args` with a ToolArgs subclass")
        return Tool(
            name=name or fn.__name__,
            description=" ".join(inspect.cleandoc(fn.__doc__ or "").split()),
            args=args_model,
            fn=fn,
            owners=frozenset(owners),
            side_effect=side_effect,
            critical=critical,
        )

    return decorate


class ToolRegistry:
    """A set of tools by name, and the one place they execute, owner checked."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools and self._tools[tool.name] != tool:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def tool(
        self,
        *,
        owners: tuple[str, ...],
        side_effect: SideEffect = "read",
        critical: bool = False,
        name: str | None = None,
    ) -> Callable[[ToolFn], ToolFn]:
        """Decorate ``fn(ctx, args: ArgsModel)`` into this registry (for a registry built in place)."""

        def decorate(fn: ToolFn) -> ToolFn:
            self.register(function_tool(owners=owners, side_effect=side_effect, critical=critical, name=name)(fn))
            return fn

        return decorate

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def for_agent(self, agent: str) -> list[Tool]:
        return [t for t in self._tools.values() if agent in t.owners]

    def execute(self, ctx: ToolContext, name: str, arguments: dict[str, Any]) -> Any:
        """Run a tool for ``ctx.agent``. Raises ToolError with a message for the model."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(t.name for t in self.for_agent(ctx.agent))) or "none"
            raise ToolError(f"There is no tool named {name!r}. Tools you can call: {known}.", kind="invalid")
        if ctx.agent not in tool.owners:
            raise PolicyViolation(
                f"The {ctx.agent} agent may not call {name}; it belongs to {', '.join(sorted(tool.owners))}. "
                "Hand this part of the request to a human or answer without it."
            )
        if ctx.dry_run and tool.side_effect != "read":
            wanted = ", ".join(f"{k}={v!r}" for k, v in sorted(arguments.items()))
            raise ToolError(
                f"Shadow mode: {name}({wanted}) was not run; nothing was changed. Say in your answer what you "
                "would do; a human decides and acts.",
                kind="shadow",
            )
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolError(
                f"Invalid arguments for {name}: {problems}. Fix them and call {name} again.", kind="invalid"
            ) from None
        try:
            output = tool.fn(ctx, args)
        except ToolError as exc:
            # A refusal or a fixable argument is the model's to handle, not a failed backend.
            if exc.kind not in ("policy", "invalid", "not_found"):
                exc.critical = exc.critical or tool.critical
            raise
        except SoftTimeLimitExceeded:
            raise  # the deadline cut the agent off: not the tool's failure
        except Exception as exc:  # a backend failure: never a stack trace to the model
            raise ToolError(
                f"{name} failed ({type(exc).__name__}). The system behind it may be down; "
                "do not retry with the same arguments.",
                critical=tool.critical,
                kind="backend",
            ) from exc
        return screened_output(ctx, name, bound_output(output))


def screened_output(ctx: ToolContext, name: str, output: Any) -> Any:
    """The output with every text field that reads as instructions to the assistant withheld.

    A knowledge-base article or a field the customer typed (a name, an order note) must not
    steer the agent. The log names where and which detectors fired, never the text: it is on
    the record of the system the tool read.
    """
    screened = screen_output(output)
    if screened.withheld:
        TOOL_OUTPUT_WITHHELD.labels(name).inc(len(screened.withheld))
        log.warning(
            "withheld %d field(s) of %s output for turn %s as injected instructions: %s (detectors: %s)",
            len(screened.withheld),
            name,
            ctx.turn_id,
            ", ".join(screened.withheld),
            ", ".join(screened.detectors),
        )
    return screened.value


def bound_output(output: Any) -> Any:
    """Keep a tool's output small enough for a prompt and a row."""
    encoded = json.dumps(output, default=str)
    if len(encoded) <= MAX_OUTPUT_CHARS:
        return json.loads(encoded)
    return {"truncated": True, "preview": encoded[:MAX_OUTPUT_CHARS]}
