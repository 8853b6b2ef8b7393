"""The `chdb` exporter under config/default.yaml itself (ports and data directory from its env vars).

- the SDK's spans land in the embedded engine, every field of
  docs/clickhouse-schema.md#the-spans-table-otel_traces right, read back with
  `agentdbg query --format json`;
- the daemon restarts on the same directory: the old rows are still there and new ones append;
- `agentdbg query` prints tables, CSV (header + rows) and JSON; while the daemon runs, opening its
  directory fails with an error naming the directory and the daemon's pid, `--snapshot` works,
  and the statement goes through the daemon's explorer API;
- a second daemon on the same directory fails at start with an error naming the directory
  and the first daemon's pid.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from testkit.harness import ROOT, Daemon, agentdbg_query, default_config_env, query_json, wait_until
from testkit.otel_traces_check import ROWS_SQL, assert_rows_match, send_agent_traces

DEFAULT_CONFIG = (ROOT / "config" / "default.yaml").read_text()
TABLE = "otel.otel_traces"


def default_daemon(data_dir: Path) -> Daemon:
    """config/default.yaml as shipped, pointed at free ports and `data_dir` through its env vars."""
    daemon = Daemon(DEFAULT_CONFIG)
    daemon.env = default_config_env(daemon, data_dir)
    return daemon


def explorer_url(daemon: Daemon) -> str:
    return "http://" + daemon.env["AGENTDBG_EXPLORER_ENDPOINT"]


def query(data_dir: Path, sql: str, *args: str) -> subprocess.CompletedProcess:
    """`agentdbg query` on the default config's data directory, as a user would run it once the daemon
    stopped (`--path`: the test's own directory, whatever listens on the default explorer port)."""
    return agentdbg_query(sql, "--path", str(data_dir / "chdb"), *args)


def json_rows(data_dir: Path, sql: str) -> list[dict]:
    return query_json(sql, "--path", str(data_dir / "chdb"))


def send_and_wait(daemon: Daemon) -> list:
    before = daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb")
    spans = send_agent_traces(f"http://127.0.0.1:{daemon.ports['grpc']}")
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >= before + len(spans),
               timeout=30, message="spans written to chdb")
    return spans


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_spans_persist_across_restarts_and_query_reads_them(data_dir):
    daemon = default_daemon(data_dir).start()
    try:
        first = send_and_wait(daemon)
    finally:
        assert daemon.stop() == 0
    assert_rows_match(json_rows(data_dir, ROWS_SQL.format(table=TABLE)), first, normalised=True)

    daemon = default_daemon(data_dir).start()
    try:
        second = send_and_wait(daemon)
    finally:
        assert daemon.stop() == 0
    rows = json_rows(data_dir, ROWS_SQL.format(table=TABLE))
    assert_rows_match(rows, first + second, normalised=True)
    lookup = json_rows(data_dir, "SELECT TraceId FROM otel.otel_traces_trace_id_ts GROUP BY TraceId")
    assert {row["TraceId"] for row in lookup} == {f"{s.context.trace_id:032x}" for s in first + second}


def test_query_formats(data_dir):
    with default_daemon(data_dir) as daemon:
        spans = send_and_wait(daemon)
    sql = f"SELECT SpanName, SpanKind, StatusCode, Duration FROM {TABLE} ORDER BY SpanName"
    expected = sorted(span.name for span in spans)

    table = query(data_dir, sql)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(column in lines[0] for column in ("SpanName", "SpanKind", "StatusCode", "Duration"))
    assert [line.split("│")[1].strip() for line in lines[1:] if "│" in line] == expected

    as_csv = query(data_dir, sql, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["SpanName"] for r in records] == expected
    assert {r["SpanKind"] for r in records} == {"Server", "Client", "Internal", "Producer", "Consumer"}

    as_json = json_rows(data_dir, sql)
    assert [r["SpanName"] for r in as_json] == expected
    assert {r["StatusCode"] for r in as_json} == {"Error", "Ok", "Unset"}
    assert all(isinstance(r["Duration"], int) for r in as_json)

    refused = query(data_dir, f"INSERT INTO {TABLE} (SpanName) VALUES ('x')")
    assert refused.returncode == 1 and "readonly" in refused.stderr.lower()


def test_one_process_per_directory(data_dir):
    with default_daemon(data_dir) as daemon:
        send_and_wait(daemon)
        pid = str(daemon.proc.pid)
        directory = str((data_dir / "chdb").resolve())

        busy = query(data_dir, f"SELECT count() FROM {TABLE}")
        assert busy.returncode == 1
        assert directory in busy.stderr and pid in busy.stderr and "--snapshot" in busy.stderr

        # The daemon runs its explorer: without --path, `query` asks it, read-only, while it writes.
        through_api = agentdbg_query(f"SELECT count() AS n FROM {TABLE}", "--format", "json",
                                     env={**daemon.env, "AGENTDBG_URL": explorer_url(daemon)})
        assert through_api.returncode == 0, through_api.stderr
        assert json.loads(through_api.stdout) == [{"n": 5}]

        snapshot = query(data_dir, f"SELECT count() FROM {TABLE}", "--snapshot", "--format", "csv")
        assert snapshot.returncode == 0, snapshot.stderr
        assert snapshot.stdout.splitlines()[1] == "5"

        second = default_daemon(data_dir)
        with pytest.raises(AssertionError, match="exited with 1"):
            second.start()
        log = second.log()
        assert "cannot start the pipelines" in log and directory in log and f"process {pid}" in log
        assert "Traceback" not in log
        assert daemon.healthy()
