"""`agentdbg forget` on a ClickHouse server store (`extensions::explorer::store: clickhouse`): the
`clickhouse` exporter writes the spans to a ClickHouse HTTP endpoint (the project's test endpoint
over chDB, testkit/clickhouse_http.py: no ClickHouse server package is reachable here), and the
erasure deletes them there with lightweight DELETEs over clickhouse-connect. Checked by queries
on the server, table by table, and through the explorer's session list.

Traffic: session `sess-gone` (two traces of user-a), `sess-shared` (one trace of user-a, one of
user-b) and `sess-kept` (one trace of user-b), three spans per trace."""
from __future__ import annotations

from typing import Any

import requests
from opentelemetry.sdk.resources import Resource

from testkit.harness import BASE_CONFIG, Daemon, free_port, wait_until
from testkit.otlp_spans import otlp_exporter, sdk_provider

TOKEN = "ch-forget-token"
OVERLAY = """
processors:
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
    auth: {token: %(token)s}
service:
  extensions: [health_check, debug_api, explorer]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [clickhouse]}
"""
TRACES = [("sess-gone", "user-a"), ("sess-gone", "user-a"), ("sess-shared", "user-a"), ("sess-shared", "user-b"),
          ("sess-kept", "user-b")]


def send(port: int) -> list[str]:
    """One trace per entry of TRACES (three spans each, the user on the resource-less root); trace ids."""
    provider, memory = sdk_provider(Resource.create({"service.name": "ch-agent"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("forget")
    for session, user in TRACES:
        with tracer.start_as_current_span("invoke_agent", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": session, "user.id": user}):
            for step in range(2):
                with tracer.start_as_current_span(f"step {step}", attributes={"gen_ai.conversation.id": session}):
                    pass
    provider.shutdown()
    roots = [span for span in memory.get_finished_spans() if span.parent is None]
    return [f"{span.context.trace_id:032x}" for span in roots]


def ids(trace_ids: list[str]) -> str:
    return "[" + ", ".join(f"'{t}'" for t in trace_ids) + "]"


def counts(server: Any, trace_ids: list[str]) -> dict[str, int]:
    """Rows naming these traces, per table on the server."""
    where = f"WHERE has({ids(trace_ids)}, TraceId)"
    return {"spans": server.scalar(f"SELECT count() FROM otel.otel_traces {where}"),
            "trace_lookup": server.scalar(f"SELECT uniqExact(TraceId) FROM otel.otel_traces_trace_id_ts {where}"),
            # traces, not rows: an AggregatingMergeTree merges a trace's rows only in the background
            "session_traces": server.scalar(f"SELECT uniqExact(TraceId) FROM otel.otel_traces_session_traces {where}")}


def test_forget_erases_from_a_clickhouse_server(tmp_path, clickhouse_http) -> None:
    port = free_port()
    overlay = OVERLAY % {"clickhouse": clickhouse_http.url, "port": port, "token": TOKEN}
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay) as daemon:
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
        traces = send(daemon.ports["grpc"])
        wait_until(lambda: clickhouse_http.scalar("SELECT count() FROM otel.otel_traces") == 15, timeout=60,
                   interval=0.3, message="the spans on the server")

        def sessions() -> dict[str, int]:
            answer = requests.get(f"{url}/api/sessions", headers=auth, timeout=10)
            assert answer.status_code == 200, answer.text
            return {row["session"]: row["spans"] for row in answer.json()["sessions"]}

        assert sessions() == {"sess-gone": 6, "sess-shared": 6, "sess-kept": 3}
        assert requests.post(f"{url}/api/forget", json={"session": "sess-gone"}, timeout=10).status_code == 401

        gone = requests.post(f"{url}/api/forget", json={"session": "sess-gone"}, headers=auth, timeout=30)
        assert gone.status_code == 200, gone.text
        assert sorted(gone.json()["trace_ids"]) == sorted(traces[:2]) and gone.json()["deleted"]["spans"] == 6
        assert counts(clickhouse_http, traces[:2]) == {"spans": 0, "trace_lookup": 0, "session_traces": 0}
        assert clickhouse_http.scalar("SELECT count() FROM otel.otel_traces_sessions WHERE Session = 'sess-gone'") == 0
        assert sessions() == {"sess-shared": 6, "sess-kept": 3}

        user = requests.post(f"{url}/api/forget", json={"user": "user-a"}, headers=auth, timeout=30)
        assert user.status_code == 200, user.text
        assert user.json()["trace_ids"] == [traces[2]] and user.json()["deleted"]["spans"] == 3
        assert counts(clickhouse_http, [traces[2]]) == {"spans": 0, "trace_lookup": 0, "session_traces": 0}
        # The shared session is summarised again from user-b's trace, which is kept whole.
        assert counts(clickhouse_http, traces[3:]) == {"spans": 6, "trace_lookup": 2, "session_traces": 2}
        assert sessions() == {"sess-shared": 3, "sess-kept": 3}

        # Each erasure left its row in the audit table, which the explorer created on the server.
        rows = clickhouse_http.scalar("SELECT count() FROM otel.agentdbg_decisions WHERE Schema = "
                                      "'agentdbg.erasure/v1' AND Target IN ('session=sess-gone', 'user=user-a')")
        assert rows == 2
