"""Function schemas for the OpenAI brain: the agent's tools in strict mode, ``finish`` and ``route``.

``Tool.schema()`` is generated from pydantic, which marks fields with a default as optional,
leaves ``additionalProperties`` open on nested models and keeps keywords (``default``,
``maxLength``) that strict mode refuses with HTTP 400 on OpenAI and Azure. Here every object
lists all its properties as required and closed, a field that had a default becomes nullable
(the model sends ``null`` for "not given", and :func:`drop_unset` removes it so the tool's
own default applies), and only keywords strict mode accepts are kept. Dropping a constraint
is safe: the tool validates its arguments again with the pydantic model when it runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.contracts import EscalationReason
from shared.tools import Tool

FINISH = "finish"
ROUTE = "route"
FINISH_STATUSES = ("answered", "needs_info", "escalate", "not_applicable")
_KEEP = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "anyOf",
        "enum",
        "const",
        "$ref",
        "$defs",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)


@dataclass(frozen=True)
class FunctionTool:
    """One tool as the model sees it, and which of its arguments the model may leave unset."""

    name: str
    param: dict[str, Any]
    optional: frozenset[str]


def strict(node: Any) -> Any:
    """A copy of a JSON schema that strict mode accepts; optional-ness is decided by the caller."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = strict(value)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" or "properties" in out:
        props: dict[str, Any] = out.setdefault("properties", {})
        required = set(node.get("required", []))
        for name, sub in props.items():
            if name not in required:
                props[name] = nullable(sub)
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema:
        options = list(schema["anyOf"])
        if {"type": "null"} not in options:
            options.append({"type": "null"})
        return {**schema, "anyOf": options}
    if "$ref" in schema:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**rest, "anyOf": [{"$ref": schema["$ref"]}, {"type": "null"}]}
    kind = schema.get("type")
    out = dict(schema)
    if isinstance(kind, str) and kind != "null":
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def function_tool(tool: Tool) -> FunctionTool:
    spec = tool.schema()["function"]
    optional = frozenset(
        (field.alias or name) for name, field in tool.args.model_fields.items() if not field.is_required()
    )
    params = dict(spec["parameters"])
    # Tool.schema() marks every field required when pydantic listed none; the model's own
    # fields say which ones really have a default.
    params["required"] = [name for name in params.get("properties", {}) if name not in optional]
    fn = {"name": tool.name, "description": spec.get("description", ""), "parameters": strict(params), "strict": True}
    return FunctionTool(tool.name, {"type": "function", "function": fn}, optional)


def drop_unset(arguments: dict[str, Any], optional: Iterable[str]) -> dict[str, Any]:
    """Remove the ``null`` the model sends for an argument it leaves to the tool's default."""
    unset = set(optional)
    return {k: v for k, v in arguments.items() if not (v is None and k in unset)}


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters, "strict": True},
    }


def finish_tool() -> dict[str, Any]:
    reasons: list[str | None] = [r.value for r in EscalationReason]
    return _function(
        FINISH,
        "End your work on this customer message. Call it exactly once, after the tools you need.",
        {
            "status": {
                "type": "string",
                "enum": list(FINISH_STATUSES),
                "description": "answered: complete answer or action done; needs_info: one specific question; "
                "escalate: a human must take over; not_applicable: not for this agent",
            },
            "answer": {
                "type": ["string", "null"],
                "description": "the reply to the customer, the one question to ask, or for escalate a suggested "
                "reply for the human",
            },
            "confidence": {"type": "number", "description": "0 to 1: how sure you are that the answer is right"},
            "cited_call_ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "ids of the tool results (call_...) that back every claim in the answer",
            },
            "escalation_reason": {
                "type": ["string", "null"],
                "enum": [*reasons, None],
                "description": "why a human must take over; null unless status is escalate",
            },
        },
    )


def route_tool(agents: Iterable[str]) -> dict[str, Any]:
    return _function(
        ROUTE,
        "Say which agents should work on the customer's latest message.",
        {
            "agents": {
                "type": "array",
                "items": {"type": "string", "enum": sorted(agents)},
                "description": "every agent whose domain the request touches; when unsure, include it",
            },
            "intent": {"type": "string", "description": "the request in a few words"},
            "confidence": {"type": "number", "description": "0 to 1"},
        },
    )
