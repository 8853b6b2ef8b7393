"""The safety decision wire contract `agentdbg.decision/v1` (REFERENCE.md §12)."""
from __future__ import annotations

import time
from typing import Any

from connectors.triggers.event import stable_id
from pipeline.events import rfc3339

SCHEMA = "agentdbg.decision/v1"
ACTIONS = ("breaker_open", "breaker_half_open", "breaker_close", "fallback", "rollback", "promote", "throttle",
           "unthrottle", "alert", "resolve_alert")


def decision(action: str, target: Any, state: dict[str, Any], cause: dict[str, Any], reason: str,
             now: float | None = None, key_extra: str = "") -> dict[str, Any]:
    """One decision; its id is deterministic from (cause event id, action), the idempotency key."""
    assert action in ACTIONS, action
    return {
        "schema": SCHEMA,
        "id": stable_id(cause.get("event_id", ""), action, key_extra),
        "action": action,
        "target": target,
        "state": state,
        "cause": cause,
        "decided_at": rfc3339(time.time() if now is None else now),
        "reason": reason,
    }


def cause_of(event: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event.get("id", ""), "kind": event.get("kind", ""),
            "subject_key": event.get("subject_key", ""), "observed": event.get("observed"),
            "threshold": event.get("threshold")}
