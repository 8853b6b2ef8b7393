"""Builders of the safety decision `agentdbg.decision/v1`; its typed definition and id are
`pipeline.documents.decision`, shared with the readers."""
from __future__ import annotations

import time
from typing import Any

from pipeline.documents.decision import ACTIONS, ADMIN_KIND, SCHEMA, decision_id
from pipeline.pdata.events import rfc3339

__all__ = ["ACTIONS", "SCHEMA", "admin_cause", "cause_of", "decision"]


def decision(action: str, target: Any, state: dict[str, Any], cause: dict[str, Any], reason: str,
             now: float | None = None, key_extra: str = "", requested_by: str | None = None) -> dict[str, Any]:
    """One decision; its id is deterministic from (cause event id, action, target), the idempotency key."""
    assert action in ACTIONS, action
    doc = {
        "schema": SCHEMA,
        "id": decision_id(cause.get("event_id", ""), action, target, key_extra),
        "action": action,
        "target": target,
        "state": state,
        "cause": cause,
        "decided_at": rfc3339(time.time() if now is None else now),
        "reason": reason,
    }
    if requested_by is not None:
        doc["requested_by"] = requested_by
    return doc


def cause_of(event: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event.get("id", ""), "kind": event.get("kind", ""),
            "subject_key": event.get("subject_key", ""), "observed": event.get("observed"),
            "threshold": event.get("threshold")}


def admin_cause(request_id: str, target: str) -> dict[str, Any]:
    """The cause of a decision an operator asked for: `request_id` makes its id unique per request."""
    return {"event_id": f"{ADMIN_KIND}:{request_id}", "kind": ADMIN_KIND, "subject_key": target,
            "observed": None, "threshold": None}
