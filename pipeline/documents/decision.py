"""The safety decision `agentdbg.decision/v1`: one action the safety processor took.

`id` is the idempotency key, deterministic from (cause event id, action, target): a
redelivered event decides the same ids (and so nothing new), and one event that acts on two
targets (two breakers) gets one id per target. Decisions an operator asked for through the
debug API carry `requested_by` and a cause of kind `admin`.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field

from pipeline.documents.common import Document, Id, Timestamp, stable_id

SCHEMA = "agentdbg.decision/v1"
ACTIONS = ("breaker_open", "breaker_half_open", "breaker_close", "fallback", "rollback", "promote", "throttle",
           "unthrottle", "alert", "resolve_alert")
ADMIN_KIND = "admin"  # cause kind of a decision an operator asked for


def target_key(target: Any) -> str:
    """A target as text: a name as it is, an object (alert labels, service + version) as sorted-key JSON."""
    return target if isinstance(target, str) else orjson.dumps(target, option=orjson.OPT_SORT_KEYS).decode()


def decision_id(event_id: str, action: str, target: Any, extra: str = "") -> str:
    return stable_id(event_id, action, target_key(target), extra)


class Cause(Document):
    event_id: str
    kind: str = ""
    subject_key: str = ""
    observed: float | None = None
    threshold: float | None = None


class Decision(Document):
    SCHEMA: ClassVar[str] = SCHEMA

    schema_: Literal["agentdbg.decision/v1"] = Field(alias="schema")
    id: Id
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    target: str | dict[str, str | bool | int | float | None]
    state: dict[str, Any]
    cause: Cause
    decided_at: Timestamp
    reason: str
    dry_run: bool = False
    requested_by: str | None = None
