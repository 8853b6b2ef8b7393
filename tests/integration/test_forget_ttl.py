"""Retention on tables created before it was configured: the daemon's `create_schema` gives the
spans, lookup and audit tables of an existing chdb directory (created with no TTL, as an older
version did) the configured TTLs at start (ALTER TABLE ... MODIFY TTL), keeping their rows."""
from __future__ import annotations

import subprocess
import sys

from pipeline.clickhouse.audit import events_table_statements
from pipeline.clickhouse.schema import schema_statements
from testkit.harness import ROOT
from tests.integration.test_explorer_api import Api, start_daemon
from tests.integration.test_forget import sql

TOKEN = "ttl-s3cret"
OLD_ROW = "INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, SpanName) SELECT now64(9), 'ab', 'cd', 'kept'"


def create_old_tables(path: str) -> None:
    """The tables as an older daemon made them, without TTL, with one span (in another process:
    chDB hosts one engine per process)."""
    statements = [*schema_statements("otel", "otel_traces"),
                  *events_table_statements("`otel`.`agentdbg_decisions`"), OLD_ROW]
    script = ("import sys, chdb\nconn = chdb.connect(sys.argv[1])\n"
              "for statement in sys.argv[2:]:\n    conn.query(statement, 'TabSeparated')\nconn.close()\n")
    subprocess.run([sys.executable, "-c", script, path, *statements], cwd=ROOT, check=True, timeout=120)


def test_tables_created_without_ttl_get_it_at_start(tmp_path) -> None:
    data = tmp_path / "data" / "chdb"
    create_old_tables(str(data))
    daemon = start_daemon(tmp_path, token=TOKEN)
    try:
        api = Api(daemon, TOKEN)
        for table, days in (("otel_traces", 15), ("otel_traces_trace_id_ts", 15), ("agentdbg_decisions", 365)):
            [row] = sql(api, f"SHOW CREATE TABLE otel.{table}")
            assert f"+ toIntervalDay({days}) WHERE" in row["statement"], (table, row["statement"])
        assert sql(api, "SELECT SpanName FROM otel.otel_traces") == [{"SpanName": "kept"}]
    finally:
        daemon.stop()
        daemon.kill()


def test_no_ttl_means_no_ttl_alter() -> None:
    """`ttl: 0` adds no TTL and no TTL ALTER (an existing TTL is left as it is, documented in
    schema.py); the only ALTERs left give older tables the deduplication window."""
    alters = [statement for statement in (*schema_statements("otel", "otel_traces", 0),
                                          *events_table_statements("`otel`.`agentdbg_decisions`", 0))
              if statement.startswith("ALTER")]
    assert alters and all(statement.endswith("MODIFY SETTING non_replicated_deduplication_window = 1000")
                          for statement in alters), alters
    assert not any("TTL" in statement for statement in alters)
