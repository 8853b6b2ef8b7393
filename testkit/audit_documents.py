"""Shared by the audit-table tests (chdb and clickhouse exporters in an `events` pipeline).

`sample_documents()` builds real trigger events and safety decisions with the producers'
own builders (connectors/triggers/event.py, processors/safety/decision.py);
`assert_audit_rows` checks the `agentdbg_decisions` rows read back against them: every
column (pipeline/clickhouse/audit.py) and the stored JSON equal to the document.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from connectors.triggers.event import Examples, Observation, document
from processors.safety.decision import cause_of, decision

NOW = 1_790_000_000.25  # a fixed time with a fraction, so timestamps are checked below the second
AUDIT_SQL = ("SELECT toUnixTimestamp64Nano(Timestamp) AS Timestamp, Schema, Id, Kind, Status, Target, Document "
             "FROM {table} {final} ORDER BY Kind, Id")


def trigger(kind: str, subject: dict[str, Any], status: str, now: float = NOW) -> dict[str, Any]:
    examples = Examples()
    examples.add("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    observation = Observation(kind, subject, observed=0.15, threshold=0.05, unit="ratio",
                              window=(now - 300, now), severity="critical", message=f"{kind} {status}",
                              examples=examples)
    return document(observation, status, episode=f"{kind}-episode", first_seen=now - 60, last_seen=now - 1,
                    now=now, detector="triggers")


def sample_documents(now: float = NOW) -> list[dict[str, Any]]:
    """Two trigger events and three decisions (text and object targets), as the pipeline carries them."""
    firing = trigger("error_rate_spike", {"service": "planner-agent", "canary": True}, "firing", now)
    resolved = trigger("dependency_failure", {"dependency": "postgres"}, "resolved", now + 1)
    breaker = decision("breaker_open", "database", {"state": "open", "tier": 1, "fallback": "cache_only"},
                       cause_of(resolved), "3 dependency failures", now=now + 2)
    rollback = decision("rollback", {"service": "planner-agent", "version": "1.4.2"}, {"phase": "rolled_back"},
                        cause_of(firing), "canary error rate 15 % > 10 %", now=now + 3)
    throttle = decision("throttle", {"agent": "travel"}, {"rate_per_minute": 1000, "burst_per_second": 100},
                        cause_of(firing), "daily budget spent", now=now + 4)
    return [firing, resolved, breaker, rollback, throttle]


def epoch_ns(text: str) -> int:
    """An RFC 3339 time with at most microseconds (what the builders write), in nanoseconds."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000


def expected_row(doc: dict[str, Any]) -> dict[str, Any]:
    is_decision = "action" in doc
    target = doc["target"] if is_decision else doc["subject_key"]
    return {
        "Timestamp": epoch_ns(doc["decided_at"] if is_decision else doc["emitted_at"]),
        "Schema": doc["schema"], "Id": doc["id"], "Kind": doc["action"] if is_decision else doc["kind"],
        "Status": "" if is_decision else doc["status"],
        "Target": target if isinstance(target, str) else json.dumps(target, sort_keys=True, separators=(",", ":")),
    }


def assert_audit_rows(rows: Iterable[dict[str, Any]], documents: list[dict[str, Any]]) -> None:
    """One row per document id, every column right and the stored JSON equal to the document."""
    by_id = {}
    for row in rows:
        assert row["Id"] not in by_id, f"document {row['Id']} stored twice"
        by_id[row["Id"]] = row
    assert set(by_id) == {doc["id"] for doc in documents}
    for doc in documents:
        row = by_id[doc["id"]]
        for column, value in expected_row(doc).items():
            assert row[column] == value, f"{doc['id']} {column}: {row[column]!r} != {value!r}"
        assert json.loads(row["Document"]) == doc
