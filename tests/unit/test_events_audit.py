"""The decisions/events audit table: column mapping, and the `chdb` exporter as an events-pipeline member.

- `events_columns` lifts Timestamp (decided_at / emitted_at, nanoseconds kept), Kind (action /
  trigger kind), Status ('' for decisions), Target (text, or sorted-key JSON, or subject_key)
  out of each document and keeps the document's JSON;
- a `chdb` exporter created for the events signal writes the documents to
  `agentdbg_decisions` (configurable name) and they read back equal; a redelivered document
  (same id, decided again later) collapses to its latest copy under FINAL and after a merge,
  which is what ORDER BY (Kind, Id) on a ReplacingMergeTree(Timestamp) is for;
- `chdb` and `clickhouse` accept events pipelines; the traces table is not created by the
  events instance.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from exporters.chdb import ChdbConfig, ChdbExporter
from pipeline.clickhouse.audit import EVENTS_COLUMNS, events_columns, rfc3339_ns
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.events import Events
from pipeline.registry import factories
from processors.safety.decision import decision
from testkit.audit_documents import AUDIT_SQL, NOW, assert_audit_rows, epoch_ns, sample_documents


@pytest.mark.parametrize("text, expected", [
    ("2026-09-21T10:00:00Z", 1_789_984_800 * 10**9),
    ("2026-09-21T10:00:00.5Z", 1_789_984_800 * 10**9 + 500_000_000),
    ("2026-09-21T10:00:00.123456789Z", 1_789_984_800 * 10**9 + 123_456_789),
    ("2026-09-21T12:00:00.000000001+02:00", 1_789_984_800 * 10**9 + 1),
    ("2026-09-21T10:00:00.1234567891Z", 1_789_984_800 * 10**9 + 123_456_789),
    ("not a time", None), ("", None), (None, None), (1_789_984_800, None),
])
def test_rfc3339_keeps_nanoseconds(text: Any, expected: int | None) -> None:
    assert rfc3339_ns(text) == expected


def test_columns_of_decisions_and_trigger_events() -> None:
    documents = sample_documents()
    unstamped = {"schema": "agentdbg.trigger/v1", "id": "x", "kind": "deadlock", "status": "firing",
                 "subject_key": "agent=a"}
    batch = Events([*documents, unstamped], received_at=NOW)
    columns = dict(zip((name for name, _ in EVENTS_COLUMNS), events_columns(batch)))
    assert all(len(column) == len(documents) + 1 for column in columns.values())
    firing, resolved, breaker, rollback, throttle = documents
    assert columns["Kind"] == ["error_rate_spike", "dependency_failure", "breaker_open", "rollback", "throttle",
                               "deadlock"]
    assert columns["Status"] == ["firing", "resolved", "", "", "", "firing"]
    assert columns["Target"][:5] == ["service=planner-agent,canary=true", "dependency=postgres", "database",
                                     '{"service":"planner-agent","version":"1.4.2"}', '{"agent":"travel"}']
    assert columns["Timestamp"][:5] == [epoch_ns(firing["emitted_at"]), epoch_ns(resolved["emitted_at"]),
                                        *(epoch_ns(d["decided_at"]) for d in (breaker, rollback, throttle))]
    assert columns["Timestamp"][5] == int(NOW * 10**9)  # no timestamp: the batch's receive time
    assert [json.loads(text) for text in columns["Document"]] == [*documents, unstamped]
    assert columns["Id"] == [doc["id"] for doc in batch.documents]


def test_chdb_and_clickhouse_take_events_pipelines() -> None:
    registered = factories()
    assert Signal.EVENTS in registered[Kind.EXPORTER]["chdb"].signals
    assert Signal.EVENTS in registered[Kind.EXPORTER]["clickhouse"].signals


def _events_exporter(path: Path) -> ChdbExporter:
    config = ChdbConfig(path=str(path), events_table_name="audit", sending_queue={"enabled": False})
    return ChdbExporter(Settings.make(Kind.EXPORTER, ComponentID("chdb", "audit"), Signal.EVENTS), config)


def _rows(exporter: ChdbExporter, sql: str) -> list[dict[str, Any]]:
    assert exporter.store is not None
    data = exporter.store.conn.query(sql, "JSONEachRow").bytes()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


async def test_chdb_writes_the_audit_table_and_a_redelivery_collapses(tmp_path: Path) -> None:
    documents = sample_documents()
    breaker = documents[2]
    again = decision(breaker["action"], breaker["target"], breaker["state"], breaker["cause"], breaker["reason"],
                     now=NOW + 60)  # the same decision made again after a redelivery: same id, later time
    assert again["id"] == breaker["id"]
    exporter = _events_exporter(tmp_path / "chdb")
    await exporter.start(None)
    try:
        await exporter.consume(Events(documents))
        await exporter.consume(Events([again]))
        table = "otel.audit"
        assert {row["name"] for row in _rows(exporter, "SHOW TABLES FROM otel")} == {"audit"}
        assert_audit_rows(_rows(exporter, AUDIT_SQL.format(table=table, final="FINAL")),
                          [again if doc is breaker else doc for doc in documents])
        exporter.store.conn.query(f"OPTIMIZE TABLE {table} FINAL", "TabSeparated")
        merged = _rows(exporter, AUDIT_SQL.format(table=table, final=""))
        assert len(merged) == len(documents)
        assert next(r for r in merged if r["Id"] == breaker["id"])["Timestamp"] == epoch_ns(again["decided_at"])
    finally:
        await exporter.shutdown(time.monotonic() + 10)
