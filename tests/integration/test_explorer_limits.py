"""Reads must not starve the writer (extensions/explorer/store.py): on config/default.yaml, reads
past the explorer's gate are refused with 503 and Retry-After instead of queuing, and a read past
its own memory cap fails alone (the engine's cap for reads is a quarter of its total), while the
spans sent meanwhile are stored and listed as usual."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from opentelemetry.sdk.resources import Resource

from testkit.harness import Daemon, wait_until
from testkit.otlp_spans import otlp_exporter, sdk_provider
from tests.integration.test_explorer_api import MS, Api, start_daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    started = start_daemon(tmp_path_factory.mktemp("limits"))
    try:
        yield started
    finally:
        started.stop()
        started.kill()


def query(api: Api, sql: str) -> requests.Response:
    return requests.post(f"{api.url}/api/query", json={"sql": sql, "format": "json"}, timeout=60)


def send_session(daemon: Daemon, session: str, spans: int) -> set[str]:
    """`spans` SDK spans of one session; their span ids."""
    provider, memory = sdk_provider(Resource.create({"service.name": "limits-agent"}),
                                    otlp_exporter("grpc", daemon.ports["grpc"]))
    tracer = provider.get_tracer("limits")
    base = time.time_ns() - 10_000 * MS
    for index in range(spans):
        tracer.start_span("chat gpt-4o", start_time=base + index * MS, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.conversation.id": session}).end(base + (index + 1) * MS)
    provider.shutdown()
    return {f"{span.context.span_id:016x}" for span in memory.get_finished_spans()}


def listed_spans(api: Api, session: str) -> int:
    rows = [row for row in api.get("/api/sessions")["sessions"] if row["session"] == session]
    return rows[0]["spans"] if rows else 0


def test_reads_past_the_gate_get_503_with_retry_after_and_the_api_goes_on(daemon) -> None:
    api = Api(daemon)
    with ThreadPoolExecutor(14) as pool:  # one read runs, eight wait: the rest are refused at once
        answers = list(pool.map(lambda _: query(api, "SELECT sleep(1) AS slept"), range(14)))
    refused = [answer for answer in answers if answer.status_code == 503]
    served = [answer for answer in answers if answer.status_code == 200]
    assert len(refused) >= 5 and served and len(refused) + len(served) == 14
    assert all(int(answer.headers["Retry-After"]) >= 1 and "busy" in answer.text for answer in refused)
    assert all(answer.json() == [{"slept": 0}] for answer in served)
    spans = send_session(daemon, "sess-after-busy", 3)
    wait_until(lambda: listed_spans(api, "sess-after-busy") == 3, timeout=30, message="session listed")
    view = api.get("/api/sessions/sess-after-busy")
    assert {span["span_id"] for span in view["spans"]} == spans


def test_a_read_past_its_memory_cap_fails_alone_and_ingest_goes_on(daemon) -> None:
    api = Api(daemon)
    answer = query(api, "SELECT length(groupArray(number)) AS n FROM numbers(40000000)")  # ~320 MB of UInt64
    assert answer.status_code == 502 and "MEMORY_LIMIT_EXCEEDED" in answer.text
    assert "64.00 MiB" in answer.text  # the read's own cap, not the engine's 256 MiB total
    spans = send_session(daemon, "sess-after-memory", 50)
    wait_until(lambda: listed_spans(api, "sess-after-memory") == 50, timeout=30, message="session listed")
    view = api.get("/api/sessions/sess-after-memory")
    assert {span["span_id"] for span in view["spans"]} == spans and view["truncated"] is False
    assert query(api, "SELECT count() AS n FROM numbers(1000)").json() == [{"n": 1000}]
