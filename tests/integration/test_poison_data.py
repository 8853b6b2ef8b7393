"""Poison data: one span a table cannot hold never costs its good neighbours or the batches behind it.

Against the running daemon (otlp → batch → chdb / clickhouse), good spans and poison spans are
sent in the same batch window (in one request and in the requests beside it), then a later
batch on its own. Two kinds of poison:
- times the columns cannot hold (a start of 2^64−1 ns through OTLP/JSON
  `"startTimeUnixNano":"18446744073709551615"`, a start of 2^63 ns and an event time of
  2^64−1 ns through protobuf): stored clamped to DateTime64(9)'s last instant, marked with the
  span attribute `agentdbg.clamped` (pipeline/clickhouse/schema.py "Limits"), nothing failed;
- a span the engine refuses (a table constraint the operator added, violated by that span's
  name): the batch is bisected, every good span is stored, the refused one is counted under
  `error_type="invalid_data"`, its reason logged once and the span kept, as sent, in a
  dead-letter file.
In both cases every good span is stored, span by span, exactly once, and the later batch is
stored too (before the fix it waited behind the poison batch's 300 s of retries, then the
whole merged batch was dropped).
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.clickhouse.schema import MAX_TIME_NS, schema_statements
from pipeline.pdata import batch_codec
from testkit.harness import (BASE_CONFIG, ROOT, Daemon, batch_processor, component, pipeline_overlay, query_json,
                           wait_until)

NOW = (time.time_ns() // 10**9 - 600) * 10**9
CONSTRAINT = "ALTER TABLE otel.otel_traces ADD CONSTRAINT no_poison CHECK SpanName != 'poison'"
ROWS = """SELECT SpanId, SpanName, ServiceName, toUnixTimestamp64Nano(Timestamp) AS start, Duration,
    SpanAttributes, arrayMap(x -> toUnixTimestamp64Nano(x), Events.Timestamp) AS events FROM otel.otel_traces"""


def _daemon(exporter: str, endpoint: str = "") -> Daemon:
    """otlp → batch (1 s window: the requests of one test meet in one batch) → the exporter."""
    options = {"dead_letter": "{dir}/dead_letter"}
    if exporter == "chdb":
        options["path"] = "{dir}/chdb"
    else:
        options.update(endpoint=endpoint, async_insert="false")
    return Daemon(BASE_CONFIG, overlay=pipeline_overlay(component(exporter, **options),
                                                        batch_processor(timeout="1s", send_batch_size=10000)))


def _span_id(seed: int) -> str:
    return f"{seed:016x}"


def _json_span(seed: int, name: str, start: int | str, end: int | str) -> dict:
    return {"traceId": f"{seed:032x}", "spanId": _span_id(seed), "name": name, "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(end)}


def _json_request(service: str, spans: list[dict]) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"scope": {"name": "poison-test"}, "spans": spans}]}]}


def _proto_request(service: str, spans: list[dict]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    scope = rs.scope_spans.add()
    scope.scope.name = "poison-test"
    for fields in spans:
        span = scope.spans.add(trace_id=bytes.fromhex(fields["traceId"]), span_id=bytes.fromhex(fields["spanId"]),
                               name=fields["name"], kind=fields["kind"],
                               start_time_unix_nano=int(fields["startTimeUnixNano"]),
                               end_time_unix_nano=int(fields["endTimeUnixNano"]))
        for event_time in fields.get("events", []):
            span.events.add(time_unix_nano=event_time, name="poison-event")
    return request


def _post(daemon: Daemon, transport: str, service: str, spans: list[dict]) -> None:
    url = f"http://127.0.0.1:{daemon.ports['http']}/v1/traces"
    if transport == "json":
        answer = requests.post(url, json=_json_request(service, spans), timeout=10)
    else:
        answer = requests.post(url, data=_proto_request(service, spans).SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert answer.status_code == 200, answer.text


def _good(first: int, count: int) -> list[dict]:
    return [_json_span(seed, f"good-{seed}", NOW + seed, NOW + seed + 1000 * seed)
            for seed in range(first, first + count)]


def _settled(daemon: Daemon, exporter: str) -> float:
    return (daemon.metric("otelcol_exporter_sent_spans_total", exporter=exporter)
            + daemon.metric("otelcol_exporter_send_failed_spans_total", exporter=exporter))


def _send_waves(daemon: Daemon, exporter: str, json_poison: list[dict], proto_poison: list[dict]) -> list[dict]:
    """In one batch window an OTLP/JSON and a protobuf request, each with good spans around its
    poison spans; then a later batch on its own. Returns the good spans."""
    first, beside, later = _good(1, 6), _good(101, 6), _good(201, 5)
    _post(daemon, "json", "agent-a", first[:3] + json_poison + first[3:])
    _post(daemon, "protobuf", "agent-b", beside[:3] + proto_poison + beside[3:])
    window = len(first) + len(beside) + len(json_poison) + len(proto_poison)
    wait_until(lambda: _settled(daemon, exporter) >= window, timeout=30,
               message="the batch with the poison spans settled")
    _post(daemon, "protobuf", "agent-c", later)
    wait_until(lambda: _settled(daemon, exporter) >= window + len(later), timeout=30, message="the later batch stored")
    return first + beside + later


def _assert_good_spans_stored(rows: list[dict], good: list[dict]) -> None:
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["SpanId"], []).append(row)
    for span in good:
        stored = by_id.get(span["spanId"], [])
        assert len(stored) == 1, f"span {span['name']} stored {len(stored)} times"
        row = stored[0]
        assert row["SpanName"] == span["name"]
        assert int(row["start"]) == int(span["startTimeUnixNano"])
        assert int(row["Duration"]) == int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])
        assert "agentdbg.clamped" not in row["SpanAttributes"]


def _chdb_rows(daemon: Daemon) -> list[dict]:
    return query_json(ROWS, "--path", str(daemon.dir / "chdb"))


# OTLP/JSON: start 2^64-1 and a normal end: start clamped, the negative duration stored as 0.
JSON_POISON = [_json_span(50, "poison-json-start", 2**64 - 1, NOW)]
# protobuf: start 2^63 (end 5 ns later: the true duration is kept), and an event at 2^64-1.
PROTO_POISON = [_json_span(51, "poison-start", 2**63, 2**63 + 5),
                {**_json_span(52, "poison-event", NOW, NOW + 7), "events": [2**64 - 1, NOW + 3]}]
CLAMPED = {  # name: (stored start, Duration, agentdbg.clamped, event times)
    "poison-json-start": (MAX_TIME_NS, 0, "Timestamp,Duration", []),
    "poison-start": (MAX_TIME_NS, 5, "Timestamp", []),
    "poison-event": (NOW, 7, "Events.Timestamp", [MAX_TIME_NS, NOW + 3]),
}


def test_times_a_column_cannot_hold_are_clamped_and_marked():
    with _daemon("chdb") as daemon:
        good = _send_waves(daemon, "chdb", JSON_POISON, PROTO_POISON)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter="chdb") == 0
    rows = _chdb_rows(daemon)
    _assert_good_spans_stored(rows, good)
    stored = {row["SpanName"]: row for row in rows if row["SpanName"].startswith("poison")}
    assert set(stored) == set(CLAMPED)
    for name, (start, duration, marker, events) in CLAMPED.items():
        row = stored[name]
        assert (int(row["start"]), int(row["Duration"])) == (start, duration)
        assert row["SpanAttributes"]["agentdbg.clamped"] == marker
        assert [int(t) for t in row["events"]] == events
    assert len(rows) == len(good) + len(CLAMPED)


def _create_constrained_table(exporter: str, daemon: Daemon, server) -> None:
    """The operator's table: the usual schema plus a constraint the span named `poison` violates."""
    statements = [*schema_statements("otel", "otel_traces"), CONSTRAINT]
    if exporter == "clickhouse":
        client = server.client()
        try:
            for statement in statements:
                client.command(statement)
        finally:
            client.close()
        return
    script = ("import sys, chdb\nconn = chdb.connect(sys.argv[1])\n"
              "for statement in sys.argv[2:]:\n    conn.query(statement, 'TabSeparated')\nconn.close()\n")
    subprocess.run([sys.executable, "-c", script, str(daemon.dir / "chdb"), *statements], cwd=ROOT, check=True,
                   timeout=120)


@pytest.mark.parametrize("exporter", ["chdb", "clickhouse"])
def test_a_row_the_engine_refuses_is_isolated_counted_and_dead_lettered(exporter, request):
    server = request.getfixturevalue("clickhouse_http") if exporter == "clickhouse" else None
    daemon = _daemon(exporter, server.url if server else "")
    _create_constrained_table(exporter, daemon, server)
    poison = [_json_span(50, "poison", NOW, NOW + 9)]
    with daemon:
        good = _send_waves(daemon, exporter, [], poison)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter=exporter,
                             error_type="invalid_data") == 1
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter=exporter) == 1
    if server is None:
        rows = _chdb_rows(daemon)
    else:
        client = server.client()
        rows = [{**row, "SpanAttributes": dict(row["SpanAttributes"])}
                for row in client.query(ROWS).named_results()]
        client.close()
    _assert_good_spans_stored(rows, good)
    assert len(rows) == len(good)
    assert daemon.log().count("VIOLATED_CONSTRAINT") == 1  # the reason, once, not once per failed insert
    letters = list((daemon.dir / "dead_letter" / exporter).glob("*.batch"))
    assert len(letters) == 1
    kept = batch_codec.decode(letters[0].read_bytes()).message
    spans = [span for rs in kept.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert [(span.name, span.span_id.hex(), span.start_time_unix_nano) for span in spans] == [
        ("poison", _span_id(50), NOW)]
    assert kept.resource_spans[0].resource.attributes[0].value.string_value == "agent-b"
    assert "VIOLATED_CONSTRAINT" in letters[0].with_suffix(".reason").read_text()
