"""The audit table has one column definition (pipeline/clickhouse/audit.py `EVENTS_COLUMNS`):
the exporters' rows and pipeline/audit.py's one-row INSERT of an operator action use it alike.
Run in the engine (chDB): an action's row, inserted by that statement, and a decision's row,
inserted by the chdb exporter's own insert path, read back through the same columns, each
document as it went in."""
from __future__ import annotations

from pathlib import Path

import orjson

from exporters.chdb import ChdbConfig, insert_rows, run_statements
from pipeline import audit
from pipeline.auth import Principal, Role
from pipeline.clickhouse.audit import EVENTS_COLUMNS
from pipeline.clickhouse.tables import events_spec
from pipeline.pdata.events import Events


def test_an_action_row_and_an_exporter_row_share_the_columns(tmp_path: Path) -> None:
    import chdb

    spec = events_spec(ChdbConfig(path=str(tmp_path)))
    action = audit.document("breaker_reset", "database", Principal("alice", Role.OPERATOR, "oidc"), "127.0.0.1", 200)
    decision = {"schema": "agentdbg.decision/v1", "id": "d-1", "action": "rollback", "target": "db",
                "decided_at": "2026-12-01T00:00:00Z"}
    parameters = audit.insert_parameters(action)
    assert list(parameters) == [name for name, _ in EVENTS_COLUMNS]
    conn = chdb.connect(str(tmp_path / "chdb"))
    try:
        run_statements(conn, list(spec.statements))
        conn.query(audit.insert_statement(spec.table), "TabSeparated", params=parameters)
        insert_rows(conn, spec, spec.to_columns(Events([decision])), "decision-batch")
        rows = conn.query(f"SELECT Schema, Id, Kind, Status, Target, Document FROM {spec.table} ORDER BY Schema",
                          "JSONEachRow").bytes().splitlines()
    finally:
        conn.close()
    stored = [orjson.loads(row) for row in rows]
    assert [(r["Schema"], r["Id"], r["Kind"], r["Status"], r["Target"]) for r in stored] == [
        ("agentdbg.audit/v1", action["id"], "breaker_reset", "200", "database"),
        ("agentdbg.decision/v1", "d-1", "rollback", "", "db")]
    assert [orjson.loads(r["Document"]) for r in stored] == [action, decision]
