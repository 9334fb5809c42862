"""The error hierarchy, in one place.

Tool errors carry a message written for the model (what to try next); API errors are
mapped to RFC 9457 problem JSON by the API layer; configuration errors are printed as one
line that says what to do.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""


class ConfigurationError(SwitchboardError):
    """A setting or a server the process needs is missing or unreachable.

    The message is one line an operator can act on; the CLI prints it without a trace.
    """


class NotFound(SwitchboardError):
    pass


class ToolError(SwitchboardError):
    """A tool could not do its job. ``message`` is for the model: say what to try next.

    ``kind`` lets a playbook react without parsing prose: ``invalid`` (fix the arguments),
    ``not_found``, ``policy`` (a human must decide), ``backend`` (the system behind the
    tool failed) or ``error``.
    """

    kind = "error"

    def __init__(self, message: str, *, critical: bool = False, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.critical = critical
        if kind is not None:
            self.kind = kind


class PolicyViolation(ToolError):
    """A tool call that policy forbids (wrong agent, over a ceiling, another customer)."""

    kind = "policy"


class BrainUnavailable(SwitchboardError):
    """The configured brain cannot answer (endpoint down, over budget)."""
