"""The trigger event `agentdbg.trigger/v1`: one detector finding about one subject.

A firing document opens an episode, a resolved one (same `episode`) closes it;
`health_snapshot` documents (status `snapshot`) carry a subject's recent metrics for the
canary analysis. `id` is deterministic from (episode, status), so a re-emission is
recognisable; `subject_key` is the subject in a stable text form and the Kafka key.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from pipeline.documents.common import Document, Id, Timestamp, stable_id

SCHEMA = "agentdbg.trigger/v1"
KINDS = ("performance_degradation", "error_rate_spike", "memory_leak", "infinite_loop", "dependency_failure",
         "context_overflow", "deadlock", "cost_budget", "health_snapshot")
SUBJECT_KEYS = ("service", "service_version", "canary", "agent", "tool", "model", "provider", "dependency",
                "session", "span_name")
MAX_EXAMPLES = 5


def subject_key(subject: dict[str, Any]) -> str:
    """Stable string form of a subject: `key=value` pairs in the contract's key order."""
    return ",".join(f"{key}={_text(subject[key])}" for key in SUBJECT_KEYS if key in subject)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def trigger_id(episode: str, status: str) -> str:
    """The id of an episode's document of `status` (the same for a re-emission)."""
    return stable_id(episode, status)


class Subject(Document):
    """What is affected: only the keys that apply, each a string (`canary` a boolean)."""

    model_config = Document.model_config | {"extra": "forbid"}

    service: str | None = None
    service_version: str | None = None
    canary: bool | None = None
    agent: str | None = None
    tool: str | None = None
    model: str | None = None
    provider: str | None = None
    dependency: str | None = None
    session: str | None = None
    span_name: str | None = None


class Window(Document):
    start: Timestamp
    end: Timestamp


class Examples(Document):
    trace_ids: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    span_ids: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)


class HealthMetrics(Document):
    error_rate: float | None = None
    latency_p95_s: float | None = None
    memory_bytes: float | None = None
    spans: int = 0


class Trigger(Document):
    SCHEMA: ClassVar[str] = SCHEMA

    schema_: Literal["agentdbg.trigger/v1"] = Field(alias="schema")
    id: Id
    episode: Id
    kind: Literal[KINDS]  # type: ignore[valid-type]
    status: Literal["firing", "resolved", "snapshot"]
    severity: Literal["critical", "warning", "info"]
    subject: Subject
    subject_key: str
    # null where a value could not be computed (JSON has no NaN)
    observed: float | None
    threshold: float | None
    unit: Literal["ratio", "seconds", "bytes", "bytes_per_hour", "usd", "count"]
    window: Window | None = None
    first_seen: Timestamp | None = None
    last_seen: Timestamp | None = None
    emitted_at: Timestamp | None = None
    examples: Examples = Examples()
    message: str = ""
    detector: str = ""
    metrics: HealthMetrics | None = None  # health_snapshot only
