"""The explorer with `store: clickhouse`: the `clickhouse` exporter writes spans to a ClickHouse
HTTP endpoint (the project's test endpoint over chDB, testkit/clickhouse_http.py: no ClickHouse
server package is reachable here) and the explorer reads them back over HTTP with
clickhouse-connect; the session answer must equal what the SDK sent."""
from __future__ import annotations

import time

import pytest
import requests

from testkit.harness import BASE_CONFIG, Daemon, free_port, wait_until
from tests.integration.test_explorer_api import MS, PRICES, SESSION, cost, hex_id, send_travel

OVERLAY = """
processors:
  genai: {prices_file: "{dir}/prices.yaml"}
  batch: {timeout: 50ms}
exporters:
  clickhouse:
    endpoint: %(clickhouse)s
    async_insert: false
extensions:
  explorer:
    endpoint: 127.0.0.1:%(port)d
    store: clickhouse
    clickhouse: {endpoint: "%(clickhouse)s"}
service:
  extensions: [health_check, debug_api, explorer]
  pipelines:
    traces: {receivers: [otlp], processors: [genai, batch], exporters: [clickhouse]}
"""


def test_sessions_and_spans_read_from_a_clickhouse_server(tmp_path, clickhouse_http) -> None:
    (tmp_path / "prices.yaml").write_text(PRICES)
    port = free_port()
    with Daemon(BASE_CONFIG, workdir=tmp_path,
                overlay=OVERLAY % {"clickhouse": clickhouse_http.url, "port": port}) as daemon:
        url = f"http://127.0.0.1:{port}"
        base = time.time_ns() - 30_000 * MS
        sent = send_travel(daemon.ports["grpc"], base)

        def session() -> dict | None:
            answer = requests.get(f"{url}/api/sessions/{SESSION}", timeout=10)
            return answer.json() if answer.status_code == 200 and answer.json()["span_count"] == 5 else None

        found = wait_until(session, timeout=30, interval=0.3, message="the session read back from ClickHouse")
        spans = {span["span_id"]: span for span in found["spans"]}
        assert set(spans) == {hex_id(span) for span in sent.values()}
        chat = spans[hex_id(sent["chat#1"])]
        assert (chat["kind"], chat["duration_ns"]) == ("llm", 1000 * MS)
        assert (chat["tokens_in"], chat["tokens_out"]) == (1200, 80)
        assert chat["cost"] == pytest.approx(cost(1200, 80))
        assert found["duration_ns"] == 3000 * MS and found["errors"] == 1
        listed = requests.get(f"{url}/api/sessions", timeout=10).json()["sessions"]
        [row] = [r for r in listed if r["session"] == SESSION]
        assert (row["spans"], row["tokens_in"], row["tokens_out"], row["start_ns"]) == (5, 2700, 280, base)
        span = sent["execute_tool search_flights"]
        detail = requests.get(f"{url}/api/spans/{span.context.trace_id:032x}/{hex_id(span)}", timeout=10).json()
        assert detail["attributes"]["flight.notes"] == "x" * 5000
        # No audit table in this store yet: empty lists, not errors.
        assert requests.get(f"{url}/api/triggers", timeout=10).json() == {"triggers": []}
        refused = requests.post(f"{url}/api/query", json={"sql": "DROP TABLE otel.otel_traces"}, timeout=10)
        assert refused.status_code == 403
