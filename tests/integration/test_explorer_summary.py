"""The sessions list reads the per-session summaries the store keeps at insert time
(pipeline/clickhouse/sessions.py). Its totals must equal a direct aggregate over the stored spans
(the query the list ran before the summaries) and what the OpenTelemetry SDK sent, span by span:
on the default config, after a restart, and for a store an older daemon made without the
summaries (the start backfills them).

The traffic covers the three ways a span finds its session: every span naming it; a trace whose
child spans reach the daemon in a batch before the root span that names the session (the genai
processor gives them the trace id until then, so the summary first counts them under the trace,
and the upgrades table records the trace when its root comes); and a plain trace with no GenAI
attributes (its own session). A store from before the upgrades table gets it backfilled.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, Status, StatusCode

from testkit.harness import ROOT, wait_until
from testkit.otlp_spans import otlp_exporter, sdk_provider
from tests.integration.test_explorer_api import MS, Api, start_daemon

LATE = "sess-late-key"
STEADY = "sess-steady"
# The list's totals straight from the spans, trace by trace: a trace's session is the
# conversation id one of its spans names (not its own trace id), else the trace id.
DIRECT = """SELECT if(conversation != '', conversation, TraceId) AS session,
    arraySort(arrayDistinct(groupArrayArray(t_services))) AS services,
    arraySort(arrayDistinct(groupArrayArray(t_agents))) AS agents, count() AS traces, sum(t_spans) AS spans,
    min(t_start) AS start_ns, max(t_end) AS end_ns, sum(t_in) AS tokens_in, sum(t_out) AS tokens_out,
    sum(t_cost) AS cost, sum(t_errors) AS errors
FROM (SELECT TraceId, anyIf(SpanAttributes['gen_ai.conversation.id'],
             SpanAttributes['gen_ai.conversation.id'] NOT IN ('', TraceId)) AS conversation,
        groupUniqArray(toString(ServiceName)) AS t_services,
        groupUniqArrayIf(SpanAttributes['gen_ai.agent.name'], SpanAttributes['gen_ai.agent.name'] != '') AS t_agents,
        count() AS t_spans, min(toUnixTimestamp64Nano(Timestamp)) AS t_start,
        max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS t_end,
        sum(toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens'])) AS t_in,
        sum(toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens'])) AS t_out,
        sum(toFloat64OrZero(SpanAttributes['gen_ai.usage.cost'])) AS t_cost,
        countIf(StatusCode = 'Error') AS t_errors
      FROM otel.otel_traces GROUP BY TraceId)
GROUP BY session ORDER BY session"""
SUMMARY_OBJECTS = ("otel_traces_sessions_mv", "otel_traces_session_traces_mv", "otel_traces_session_upgrades_mv",
                   "otel_traces_sessions", "otel_traces_session_traces", "otel_traces_session_upgrades")
UPGRADE_OBJECTS = ("otel_traces_session_upgrades_mv", "otel_traces_session_upgrades")
KEYS = ("services", "agents", "traces", "spans", "start_ns", "end_ns", "tokens_in", "tokens_out", "errors")


@dataclass
class Sent:
    """Finished SDK spans by session (a plain trace's session is its trace id)."""

    spans: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, session: str, spans: list[Any]) -> None:
        self.spans.setdefault(session, []).extend(spans)

    def total(self) -> int:
        return sum(len(spans) for spans in self.spans.values())


def sql(api: Api, statement: str) -> list[dict[str, Any]]:
    answer = requests.post(f"{api.url}/api/query", json={"sql": statement, "format": "json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def stored_spans(api: Api) -> int:
    return sql(api, "SELECT count() AS n FROM otel.otel_traces")[0]["n"]


def _chat(tracer: Any, context: Any, start: int, tokens: tuple[int, int], **extra: Any) -> Any:
    span = tracer.start_span("chat gpt-4o", context=context, kind=SpanKind.CLIENT, start_time=start, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1], **extra})
    return span


def send_late_key(api: Api, port: int, base: int, sent: Sent) -> None:
    """One trace: two LLM calls (one failing) flushed and stored before their root names the session."""
    provider, memory = sdk_provider(Resource.create({"service.name": "late-agent"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("late.agent")
    root = tracer.start_span("invoke_agent planner", kind=SpanKind.SERVER, start_time=base)
    context = trace_api.set_span_in_context(root)
    first = _chat(tracer, context, base + 10 * MS, (300, 40))
    first.end(base + 400 * MS)
    second = _chat(tracer, context, base + 500 * MS, (500, 60))
    second.set_status(Status(StatusCode.ERROR, "rate limited"))
    second.end(base + 900 * MS)
    before = stored_spans(api)
    provider.force_flush()
    wait_until(lambda: stored_spans(api) == before + 2, timeout=30, message="the child spans stored first")
    root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                         "gen_ai.conversation.id": LATE})
    root.end(base + 1000 * MS)
    provider.shutdown()
    sent.add(LATE, list(memory.get_finished_spans()))


def send_steady(port: int, base: int, traces: int, sent: Sent) -> None:
    """`traces` traces whose every span names the session; the second LLM call of each fails."""
    provider, memory = sdk_provider(Resource.create({"service.name": "steady-agent"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("steady.agent")
    for index in range(traces):
        start = base + index * 2000 * MS
        session = {"gen_ai.conversation.id": STEADY}
        root = tracer.start_span("invoke_agent helper", kind=SpanKind.SERVER, start_time=start, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"helper-{index % 2}", **session})
        context = trace_api.set_span_in_context(root)
        _chat(tracer, context, start + 5 * MS, (100 + index, 10), **session).end(start + 200 * MS)
        failing = _chat(tracer, context, start + 300 * MS, (200, 20 + index), **session)
        failing.set_status(Status(StatusCode.ERROR, "timeout"))
        failing.end(start + 700 * MS)
        root.end(start + 800 * MS)
    provider.shutdown()
    sent.add(STEADY, list(memory.get_finished_spans()))


def send_plain(port: int, base: int, sent: Sent) -> str:
    """An HTTP service's trace with no GenAI attributes: its own session, under its trace id."""
    provider, memory = sdk_provider(Resource.create({"service.name": "plain-service"}), otlp_exporter("grpc", port))
    tracer = provider.get_tracer("plain")
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER, start_time=base, attributes={
            "http.request.method": "GET"}) as span:
        with tracer.start_as_current_span("SELECT 1", start_time=base + MS, attributes={"db.system": "postgresql"}):
            pass
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    sent.add(trace_id, list(memory.get_finished_spans()))
    return trace_id


def listed(api: Api) -> dict[str, dict[str, Any]]:
    answer = api.get("/api/sessions", limit=1000)
    assert answer["truncated"] is False
    return {row["session"]: row for row in answer["sessions"]}


def assert_list_is_the_direct_aggregate(api: Api, sent: Sent) -> None:
    """Every stored span is in the list; each session's totals equal the spans' and what was sent."""
    wait_until(lambda: stored_spans(api) == sent.total(), timeout=30, message="every sent span stored")
    rows = listed(api)
    direct = {row["session"]: row for row in sql(api, DIRECT)}
    assert set(rows) == set(direct)
    for session, row in direct.items():
        assert {key: rows[session][key] for key in KEYS} == {key: row[key] for key in KEYS}, session
        assert rows[session]["cost"] == pytest.approx(row["cost"], rel=1e-9, abs=1e-12), session
    for session, spans in sent.spans.items():
        row = rows[session]
        assert row["spans"] == len(spans) and row["traces"] == len({s.context.trace_id for s in spans})
        assert row["errors"] == sum(s.status.status_code == StatusCode.ERROR for s in spans)
        assert row["start_ns"] == min(s.start_time for s in spans)
        assert row["end_ns"] == max(s.end_time for s in spans)
        assert row["tokens_in"] == sum(s.attributes.get("gen_ai.usage.input_tokens", 0) for s in spans)
        assert row["tokens_out"] == sum(s.attributes.get("gen_ai.usage.output_tokens", 0) for s in spans)
        assert row["services"] == sorted({s.resource.attributes["service.name"] for s in spans})
        assert row["agents"] == sorted({s.attributes["gen_ai.agent.name"] for s in spans
                                        if "gen_ai.agent.name" in s.attributes})
        view = api.get(f"/api/sessions/{session}")
        assert sorted(span["span_id"] for span in view["spans"]) == sorted(f"{s.context.span_id:016x}" for s in spans)


def drop_summaries(data: Path, names: tuple[str, ...] = SUMMARY_OBJECTS) -> None:
    """Make the store what a daemon without the summaries left: spans and trace-id lookup only
    (or, with `names`, without those summaries only)."""
    drops = [f"DROP {'VIEW' if name.endswith('_mv') else 'TABLE'} otel.{name}" for name in names]
    script = ("import sys, chdb\nconn = chdb.connect(sys.argv[1])\n"
              "for statement in sys.argv[2:]:\n    conn.query(statement, 'TabSeparated')\nconn.close()\n")
    subprocess.run([sys.executable, "-c", script, str(data / "chdb"), *drops], cwd=ROOT, check=True, timeout=120)


def summary_objects(api: Api) -> set[str]:
    rows = sql(api, "SELECT name FROM system.tables WHERE database = 'otel'")
    return {row["name"] for row in rows} & set(SUMMARY_OBJECTS)


def test_sessions_list_equals_the_spans_after_restart_and_backfill(tmp_path: Path) -> None:
    sent = Sent()
    base = time.time_ns() - 120_000 * MS
    daemon = start_daemon(tmp_path)
    try:
        api = Api(daemon)
        send_late_key(api, daemon.ports["grpc"], base, sent)
        send_steady(daemon.ports["grpc"], base + 5000 * MS, 3, sent)
        send_plain(daemon.ports["grpc"], base + 9000 * MS, sent)
        assert_list_is_the_direct_aggregate(api, sent)
        assert listed(api)[LATE]["traces"] == 1  # the children counted under the trace id are folded in
    finally:
        daemon.stop()

    daemon = start_daemon(tmp_path)  # a restart: the views are kept, nothing is backfilled twice
    try:
        api = Api(daemon)
        assert summary_objects(api) == set(SUMMARY_OBJECTS)
        assert_list_is_the_direct_aggregate(api, sent)
        send_steady(daemon.ports["grpc"], base + 20_000 * MS, 2, sent)
        assert_list_is_the_direct_aggregate(api, sent)
    finally:
        daemon.stop()

    drop_summaries(tmp_path / "data")
    daemon = start_daemon(tmp_path)  # an older daemon's store: the start backfills the summaries
    try:
        api = Api(daemon)
        assert summary_objects(api) == set(SUMMARY_OBJECTS)
        assert_list_is_the_direct_aggregate(api, sent)
        send_plain(daemon.ports["grpc"], base + 30_000 * MS, sent)
        assert_list_is_the_direct_aggregate(api, sent)
    finally:
        daemon.stop()

    drop_summaries(tmp_path / "data", UPGRADE_OBJECTS)
    daemon = start_daemon(tmp_path)  # a store with the summaries but not the upgrades: backfilled from them
    try:
        api = Api(daemon)
        assert summary_objects(api) == set(SUMMARY_OBJECTS)
        assert_list_is_the_direct_aggregate(api, sent)
        assert listed(api)[LATE]["traces"] == 1
    finally:
        daemon.stop()
