"""Every Prometheus metric, defined once.

Celery's prefork pool runs tasks in child processes, so metrics use prometheus-client's
multiprocess mode whenever PROMETHEUS_MULTIPROC_DIR is set (the run command and the
worker entry point set it before this module is imported); ``/metrics`` then aggregates
over every process that wrote into that directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 30.0)

TICKETS_INGESTED = Counter(
    "switchboard_messages_ingested_total",
    "Customer messages accepted, by how they arrived and whether they were new",
    ["via", "created"],
)
TURNS = Counter("switchboard_turns_total", "Turns finished, by outcome", ["outcome"])
TURN_LATENCY = Histogram(
    "switchboard_turn_latency_seconds",
    "From the customer message being stored to the merged outcome",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
MERGES = Counter("switchboard_merges_total", "Merges, by what triggered them", ["trigger"])
AGENT_LATENCY = Histogram(
    "switchboard_agent_latency_seconds",
    "Time an agent spent on a turn, by agent and status",
    ["agent", "status"],
    buckets=LATENCY_BUCKETS,
)
AGENT_TIMEOUTS = Counter("switchboard_agent_timeouts_total", "Agents cut off at the deadline", ["agent"])
AGENT_LATE_RESULTS = Counter(
    "switchboard_agent_late_results_total", "Agent results that arrived after the merge and were ignored", ["agent"]
)
ESCALATIONS = Counter("switchboard_escalations_total", "Turns escalated to humans, by reason", ["reason"])
QUEUE_WAIT = Histogram(
    "switchboard_queue_wait_seconds",
    "Time a task waited on its queue before a worker started it",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
DELIVERIES = Counter("switchboard_deliveries_total", "Outbound reply attempts, by result", ["result"])
CSAT = Histogram(
    "switchboard_csat_score",
    "Customers' satisfaction ratings (1-5), by source and who answered (bot alone, or a human)",
    ["source", "handled_by"],
    buckets=(1, 2, 3, 4, 5),
)
SUPPORT_TURNS = Counter(
    "switchboard_support_turns_total",
    "Finished customer turns by source, outcome and escalation reason (empty when not escalated)",
    ["source", "outcome", "reason"],
)
TURN_COST = Counter("switchboard_turn_cost_usd_total", "Model spend of finished turns in USD, by source", ["source"])
FIRST_RESPONSE = Histogram(
    "switchboard_first_response_seconds",
    "From a conversation's first customer message to its first reply, by source and responder (bot or human)",
    ["source", "responder"],
    buckets=(1, 2, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400),
)
HELPDESK_EVENTS = Counter(
    "switchboard_helpdesk_events_total",
    "Webhooks of connected helpdesks: taken, duplicate, ignored, then done or failed; by helpdesk and kind",
    ["helpdesk", "kind", "result"],
)
HELPDESK_CALLS = Counter(
    "switchboard_helpdesk_calls_total",
    "Writes to a helpdesk's API (replies, notes, routing), by helpdesk, step and result",
    ["helpdesk", "step", "result"],
)
SWEEPS = Counter("switchboard_sweeper_actions_total", "Recoveries done by the sweeper", ["action"])
TOOL_CALLS = Counter("switchboard_tool_calls_total", "Tool calls, by tool and result", ["agent", "tool", "result"])
TOOL_OUTPUT_WITHHELD = Counter(
    "switchboard_tool_output_withheld_total",
    "Text fields of tool outputs withheld from the agent because they read as injected instructions, by tool",
    ["tool"],
)
BRAIN_FALLBACKS = Counter(
    "switchboard_brain_fallbacks_total",
    "Decisions the local brain made because the model endpoint could not",
    ["reason"],
)
MODEL_CALLS = Counter(
    "switchboard_model_calls_total", "Chat completion attempts, by model and result", ["model", "result"]
)
MODEL_TOKENS = Counter(
    "switchboard_model_tokens_total", "Tokens reported by the model endpoint, by model and kind", ["model", "kind"]
)
MODEL_COST = Counter("switchboard_model_cost_usd_total", "Model spend in USD from usage and the price table", ["model"])
INGEST_RETRIES = Counter(
    "switchboard_ingest_retries_total",
    "Broker tickets that could not be stored (the database did not answer): retried, or parked "
    "in the dead-letter queue orchestrator.dead_letter after the last retry",
    ["outcome"],  # retry | dead_letter
)
REFUSED_TASKS = Counter(
    "switchboard_refused_tasks_total",
    "Broker tasks refused: an ingest without a valid key, an agent task naming no turn of its agent",
    ["task", "reason"],
)
DESK_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)
DESK_TRANSITIONS = Counter(
    "switchboard_desk_transitions_total",
    "Escalation desk events: queued, claimed, released, expired, replied, noted, handed_back, reopened",
    ["kind"],
)
DESK_CLAIM_WAIT = Histogram(
    "switchboard_desk_time_to_claim_seconds",
    "From an escalation entering the queue to a human claiming it",
    buckets=DESK_BUCKETS,
)
DESK_FIRST_REPLY = Histogram(
    "switchboard_desk_time_to_first_reply_seconds",
    "From an escalation being created to a human's first reply, by reason",
    ["reason"],
    buckets=DESK_BUCKETS,
)
DESK_SUGGESTIONS = Counter(
    "switchboard_desk_suggested_replies_total",
    "What humans did with the agents' suggested reply (unchanged, edited, discarded), by escalation reason",
    ["reason", "acceptance"],
)
# 1 per worker process (prefork children) that finished its start-up (database, clock,
# the brain's models loaded) and takes tasks; summed over the live processes of a worker.
READY_PROCESSES = Gauge(
    "switchboard_worker_ready_processes",
    "Worker processes that finished start-up (brain loaded) and take tasks",
    multiprocess_mode="livesum",
)


# Gauges computed from Postgres when /metrics is scraped (name -> label names): every API
# process reports the same values, so dashboards take max() rather than sum().
SCRAPE_TIME_GAUGES: dict[str, tuple[str, ...]] = {
    "switchboard_desk_escalations": ("state",),
    "switchboard_desk_oldest_queued_seconds": (),
    "switchboard_desk_sla_breached": (),
    "switchboard_desk_sla_about_to_breach": (),
    "switchboard_support_target": ("target",),
}

# The names of SupportTargets, as the alerts select them.
TARGET_NAMES = ("resolution_rate_min", "resolution_rate_max", "cost_per_resolution_max_usd", "csat_min")


def targets_exposition(targets: dict[str, float]) -> bytes:
    """SWITCHBOARD_SUPPORT_TARGETS as gauges: the alerts compare with them."""
    reg = CollectorRegistry()
    family = GaugeMetricFamily(
        "switchboard_support_target", "A target of SWITCHBOARD_SUPPORT_TARGETS the alerts hold to", labels=["target"]
    )
    for name in TARGET_NAMES:
        family.add_metric([name], float(targets[name]))

    class _Now:
        def collect(self) -> list[GaugeMetricFamily]:
            return [family]

    reg.register(_Now())
    return generate_latest(reg)


def desk_exposition(numbers: dict[str, Any]) -> bytes:
    """The desk's gauges (``orchestrator.desk.gauges``) in the text format: they are read
    from Postgres when /metrics is scraped, so every API process reports the same values."""
    reg = CollectorRegistry()
    depth = GaugeMetricFamily("switchboard_desk_escalations", "Escalations by desk state, now", labels=["state"])
    for state, n in numbers["by_state"].items():
        depth.add_metric([state], n)
    families = [
        depth,
        GaugeMetricFamily(
            "switchboard_desk_oldest_queued_seconds",
            "Age of the oldest escalation waiting in the queue (0 when none waits)",
            value=numbers["oldest_queued_s"],
        ),
        GaugeMetricFamily(
            "switchboard_desk_sla_breached",
            "Open escalations past their first-response due time with no human reply yet",
            value=numbers["breached"],
        ),
        GaugeMetricFamily(
            "switchboard_desk_sla_about_to_breach",
            "Open escalations whose first-response due time is within SWITCHBOARD_DESK_SLA_WARNING_MINUTES",
            value=numbers["about_to_breach"],
        ),
    ]

    class _Now:
        def collect(self) -> list[GaugeMetricFamily]:
            return families

    reg.register(_Now())
    return generate_latest(reg)


def registry() -> CollectorRegistry:
    """The registry to expose: aggregated over processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
        return reg
    from prometheus_client import REGISTRY

    return REGISTRY


def render() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics of this process tree on its own port (used by workers)."""
    start_http_server(port, addr=host, registry=registry())


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty the directory before the processes that write into it start."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
