"""The audit trail: every operator or admin action, as a document `agentdbg.audit/v1`.

An action is a breaker reset or a throttle lift (the debug API), a config reload (the debug
API's `POST /debug/reload`, or SIGHUP), a SQL query or an erasure (the explorer). Each one is
recorded after it ran, with its outcome:

    {"schema": "agentdbg.audit/v1", "id": "<uuid>", "action": "breaker_reset",
     "target": "database", "at": "2026-...Z",
     "by": {"subject": "alice@example.com", "role": "operator", "method": "oidc"},
     "remote": "127.0.0.1", "status": 200, "details": {...}}

Where it goes: to every sink registered with `add_sink` (the explorer registers one that
inserts into the audit table of its store, `agentdbg_decisions`, the table the safety
decisions and trigger events are in), and always to the log as one `audit` line at info
level (logger `agentdbg.audit`), so a daemon with no store still keeps the trail.
Safety decisions themselves reach the audit table through the events pipeline (the chdb and
clickhouse exporters), a decision an operator asked for with `requested_by`.

What it promises: a sink that fails (the store is down) is logged and the action's answer is
not changed: the action has already happened. The trail is append-only for the daemon:
rows are only ever inserted (`insert_statement`); no statement of the daemon updates or
deletes a row of the audit table (tests/unit/test_audit_append_only.py checks the code).
No secret is ever put in a document: SQL text is kept, tokens never are.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson

from pipeline.auth import Principal
from pipeline.clickhouse.audit import bound_insert

SCHEMA = "agentdbg.audit/v1"
Sink = Callable[[dict[str, Any]], Awaitable[None]]
log = logging.getLogger("agentdbg.audit")
_sinks: dict[str, Sink] = {}


def document(action: str, target: str, principal: Principal | None, remote: str, status: int,
             details: dict[str, Any] | None = None, claimed: str = "") -> dict[str, Any]:
    """The audit document of one action (`principal` None: the caller was not authenticated,
    `claimed` is who a request body said it was)."""
    by: dict[str, Any] = {"subject": principal.subject if principal else "",
                          "role": principal.role.value if principal and principal.role else "",
                          "method": principal.method if principal else ""}
    if claimed:
        by["claimed"] = claimed
    return {"schema": SCHEMA, "id": str(uuid.uuid4()), "action": action, "target": target,
            "at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "by": by, "remote": remote, "status": status, "details": details or {}}


def add_sink(name: str, sink: Sink) -> None:
    """Write every later audit document with `sink` too (replacing an earlier one of that name)."""
    _sinks[name] = sink


def remove_sink(name: str) -> None:
    _sinks.pop(name, None)


async def record(doc: dict[str, Any]) -> None:
    """Log `doc` and hand it to every sink; a failing sink is logged, never raised."""
    log.info("audit", extra={"kv": {"action": doc.get("action", ""), "target": str(doc.get("target", ""))[:200],
                                    "subject": doc.get("by", {}).get("subject", ""),
                                    "role": doc.get("by", {}).get("role", ""), "remote": doc.get("remote", ""),
                                    "status": doc.get("status", "")}})
    for name, sink in list(_sinks.items()):
        try:
            await sink(doc)
        except Exception as exc:  # noqa: BLE001 - the action is done; losing its row must not undo it
            log.error("cannot write the audit document to the audit table",
                      extra={"kv": {"sink": name, "id": doc.get("id", ""),
                                    "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}})


def insert_statement(events_table: str) -> str:
    """The one statement that writes the audit table from outside the events pipeline: an
    INSERT of one row, in the columns the exporters write (pipeline/clickhouse/audit.py's
    `EVENTS_COLUMNS`, the one definition), values bound by column name (`insert_parameters`)."""
    return bound_insert(events_table)


def insert_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    """The row of audit document `doc`: a value for each `EVENTS_COLUMNS` column, by its name."""
    return {"Timestamp": time.time_ns(), "Schema": str(doc["schema"]), "Id": str(doc["id"]),
            "Kind": str(doc.get("action", "")), "Status": str(doc.get("status", "")),
            "Target": str(doc.get("target_key") or doc.get("target", "")),
            "Document": orjson.dumps(doc, default=str).decode()}
