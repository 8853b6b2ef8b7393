"""Retention and erasure on config/default.yaml (chdb store, explorer with a token): the TTLs on
every table, and `agentdbg forget --session | --user` against the running daemon, checked by
queries on every table (spans, trace-id lookup erased; the append-only audit table kept, plus
the erasure's own row).

Traffic: test_explorer_api.py's two sessions (`sess-travel-1`, `sess-checkout` whose errors
fire a trigger and open a breaker, both audit documents naming checkout traces), plus a
session `sess-user` of user `user-42` (service support-agent).
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from extensions.explorer.api import ExplorerApp
from extensions.explorer.config import ExplorerConfig
from extensions.explorer.store import ChdbReader
from testkit.harness import wait_until
from tests.integration.test_explorer_api import CHECKOUT, SESSION, Api, send_traffic, start_daemon, wait_stored
from tests.integration.test_explorer_cli import run
from testkit.otlp_logs import exporters_for
from testkit.otlp_spans import otlp_exporter, sdk_provider

TOKEN = "forget-s3cret"
USER, USER_SESSION = "user-42", "sess-user"
ERASURE = "agentdbg.erasure/v1"


def send_user_session(port: int) -> set[str]:
    """Three traces of one user's session, each with a log record inside its model call, and one
    log record outside any trace that names the user; the trace ids."""
    provider, memory = sdk_provider(Resource.create({"service.name": "support-agent"}), otlp_exporter("grpc", port))
    log_exporter, _ = exporters_for("grpc", f"127.0.0.1:{port}")
    logs = LoggerProvider(resource=Resource.create({"service.name": "support-agent"}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    tracer, logger = provider.get_tracer("support.agent"), logs.get_logger("support.agent")
    for turn in range(3):
        with tracer.start_as_current_span("invoke_agent support", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": USER_SESSION, "user.id": USER}):
            with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat",
                                                                         "turn": turn}):
                logger.emit(body=f"turn {turn}: the model answered", attributes={"turn": turn})
    logger.emit(body="support ticket closed", attributes={"user.id": USER})
    logs.shutdown()
    provider.shutdown()
    return {f"{span.context.trace_id:032x}" for span in memory.get_finished_spans()}


def user_logs(api: Api, trace_ids: set[str]) -> int:
    """The log records of these traces, or that name the user."""
    return sql(api, f"SELECT count() AS n FROM otel.otel_logs WHERE has({in_list(trace_ids)}, TraceId) "
                    f"OR LogAttributes['user.id'] = '{USER}'")[0]["n"]


def sql(api: Api, statement: str) -> list[dict[str, Any]]:
    answer = requests.post(f"{api.url}/api/query", json={"sql": statement, "format": "json"}, headers=api.headers,
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def in_list(ids: set[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in sorted(ids)) + "]"


def stored(api: Api, trace_ids: set[str]) -> dict[str, int]:
    """Rows that name these traces, per table (the audit count leaves erasure records out)."""
    ids = in_list(trace_ids)
    return {
        "spans": sql(api, f"SELECT count() AS n FROM otel.otel_traces WHERE has({ids}, TraceId)")[0]["n"],
        # traces, not rows: the AggregatingMergeTree merges a trace's rows only in the background
        "trace_lookup": sql(api, "SELECT uniqExact(TraceId) AS n FROM otel.otel_traces_trace_id_ts "
                                 f"WHERE has({ids}, TraceId)")[0]["n"],
        # trigger events and decisions (not the audit rows of this test's own SQL, which quote the ids)
        "audit": sql(api, "SELECT count() AS n FROM otel.agentdbg_decisions WHERE Schema NOT IN "
                          "('agentdbg.erasure/v1', 'agentdbg.audit/v1') "
                          f"AND arrayExists(t -> position(Document, t) > 0, {ids})")[0]["n"]}


def session_spans(api: Api, session: str) -> int:
    """Spans of the traces one of whose spans carries the session (as the explorer counts them)."""
    return sql(api, "SELECT count() AS n FROM otel.otel_traces WHERE TraceId IN (SELECT TraceId FROM "
                    f"otel.otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = '{session}')")[0]["n"]


def erasures(api: Api) -> list[dict[str, Any]]:
    import json

    rows = sql(api, f"SELECT Document FROM otel.agentdbg_decisions WHERE Schema = '{ERASURE}' ORDER BY Timestamp")
    return [json.loads(row["Document"]) for row in rows]


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory):
    daemon = start_daemon(tmp_path_factory.mktemp("forget"), token=TOKEN)
    try:
        api = Api(daemon, TOKEN)
        sent = send_traffic(daemon)
        user_traces = send_user_session(daemon.ports["grpc"])
        wait_stored(api, sent)
        wait_until(lambda: session_spans(api, USER_SESSION) == 6, timeout=60, interval=0.3,
                   message="the user's session stored")
        wait_until(lambda: user_logs(api, user_traces) == 4, timeout=60, interval=0.3,
                   message="the user's log records stored")
        yield daemon, api, sent, user_traces, tmp_path_factory.mktemp("elsewhere")
    finally:
        daemon.stop()
        daemon.kill()


def test_every_table_has_its_ttl(explorer) -> None:
    _, api, *_ = explorer
    keep = "WHERE {} < '2100-01-01 00:00:00'"  # a clamped far-future time is never expired (schema.py)
    for table, ttl in (("otel_traces", "TTL toDateTime(Timestamp) + toIntervalDay(15) " + keep.format("Timestamp")),
                       ("otel_traces_trace_id_ts", "TTL toDateTime(Start) + toIntervalDay(15) " + keep.format("Start")),
                       ("agentdbg_decisions", "TTL toDateTime(Timestamp) + toIntervalDay(365) "
                        + keep.format("Timestamp"))):
        [row] = sql(api, f"SHOW CREATE TABLE otel.{table}")
        assert ttl in row["statement"], (table, row["statement"])


def test_forget_needs_the_admin_token(explorer) -> None:
    _, api, *_ = explorer
    url = f"{api.url}/api/forget"
    assert requests.post(url, json={"session": SESSION}, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.post(url, json={"session": SESSION}, headers=wrong, timeout=10).status_code == 401
    for body in ({}, {"session": SESSION, "user": USER}, {"session": ""}, {"user": 42}, []):
        answer = requests.post(url, json=body, headers=api.headers, timeout=10)
        assert answer.status_code == 400, (body, answer.text)
    assert session_spans(api, SESSION) == 5  # nothing was erased by a refused request


def test_forget_without_a_configured_token_is_refused() -> None:
    """The explorer app in this process with no token: the route refuses before touching a store
    (none is open here), so an open API never erases."""
    async def post() -> tuple[int, str]:
        app = ExplorerApp(ExplorerConfig(), ChdbReader("")).app()
        async with TestClient(TestServer(app)) as client:
            answer = await client.post("/api/forget", json={"session": SESSION})
            return answer.status, await answer.text()

    status, text = asyncio.run(post())
    assert status == 403 and "auth::token" in text


def test_forget_session_erases_it_from_every_table_and_is_audited(explorer) -> None:
    _, api, sent, user_traces, cwd = explorer
    before = stored(api, sent.checkout_traces)
    assert before["spans"] == sent.checkout_spans and before["trace_lookup"] == 30 and before["audit"] >= 1
    travel_before = stored(api, {row["t"] for row in sql(
        api, f"SELECT DISTINCT TraceId AS t FROM otel.otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] "
             f"= '{SESSION}'")})

    done = run(cwd, "forget", "--session", CHECKOUT, "--url", api.url, token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert f"erased session={CHECKOUT}: 30 trace(s)" in done.stdout

    # The audit table is append-only: the trigger events and decisions naming the traces stay.
    assert stored(api, sent.checkout_traces) == {"spans": 0, "trace_lookup": 0, "audit": before["audit"]}
    assert session_spans(api, CHECKOUT) == 0
    assert stored(api, {row["t"] for row in sql(
        api, f"SELECT DISTINCT TraceId AS t FROM otel.otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] "
             f"= '{SESSION}'")}) == travel_before
    assert session_spans(api, SESSION) == 5 and session_spans(api, USER_SESSION) == 6
    # The session summaries: the checkout session gone from them and from the list, the others kept.
    assert sql(api, f"SELECT count() AS n FROM otel.otel_traces_sessions WHERE Session = '{CHECKOUT}'")[0]["n"] == 0
    assert sql(api, "SELECT count() AS n FROM otel.otel_traces_session_traces WHERE "
                    f"has({in_list(sent.checkout_traces)}, TraceId)")[0]["n"] == 0
    listed = {row["session"]: row["spans"] for row in api.get("/api/sessions")["sessions"]}
    assert CHECKOUT not in listed and listed[SESSION] == 5 and listed[USER_SESSION] == 6
    [record] = [doc for doc in erasures(api) if doc["target"] == {"session": CHECKOUT}]
    assert record["action"] == "forget" and record["requested_by"]["role"] == "admin"
    assert set(record["trace_ids"]) == sent.checkout_traces
    assert record["deleted"]["spans"] == sent.checkout_spans and "audit" not in record["deleted"]
    assert record["audit_kept"] == before["audit"]
    assert record["requested_by"]["subject"] == "explorer:token" and record["requested_by"]["remote"] == "127.0.0.1"
    assert record["deleted"]["trace_lookup"] >= 30  # rows: one or more per trace until merged
    assert record["decided_at"].endswith("Z")


def test_forget_user_erases_every_trace_of_that_user(explorer) -> None:
    _, api, sent, user_traces, cwd = explorer
    assert stored(api, user_traces)["spans"] == 6 and user_logs(api, user_traces) == 4
    others = sql(api, "SELECT count() AS n FROM otel.otel_logs")[0]["n"] - 4
    done = run(cwd, "forget", "--user", USER, "--url", api.url, "--json", token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert stored(api, user_traces) == {"spans": 0, "trace_lookup": 0, "audit": 0}
    # Its log records too: the three inside its traces and the one outside any trace that names it.
    assert user_logs(api, user_traces) == 0
    assert sql(api, "SELECT count() AS n FROM otel.otel_logs")[0]["n"] == others
    assert session_spans(api, USER_SESSION) == 0 and session_spans(api, SESSION) == 5
    listed = {row["session"]: row["spans"] for row in api.get("/api/sessions")["sessions"]}
    assert USER_SESSION not in listed and listed[SESSION] == 5
    [record] = [doc for doc in erasures(api) if doc["target"] == {"user": USER}]
    assert record["deleted"]["spans"] == 6 and set(record["trace_ids"]) == user_traces
    assert record["deleted"]["logs"] == 4

    refused = run(cwd, "forget", "--user", USER, "--url", api.url, token=None)
    assert refused.returncode == 1 and "token" in refused.stderr
