"""Issue 4, acceptance 1 and 3: one daemon fans every span out to Kafka, ClickHouse and Tempo (OTLP).

(1) End to end. The OpenTelemetry SDK sends the known agent traces of testkit/otel_traces_check.py
    (two agents: every span kind, Ok/Error/Unset status, every attribute type, events, links,
    a remote parent with trace state) over OTLP/gRPC to ONE daemon whose traces pipeline has,
    side by side, `kafka` (Apache Kafka), `clickhouse` (the chDB-backed HTTP test endpoint), `otlp`
    (gRPC, the protocol of Tempo, Jaeger and every OTLP backend) to Jaeger v2 (testkit/jaeger.py,
    memory storage), and `otlphttp` with `headers: {X-Scope-OrgID: tenant-a}` to a recording
    OTLP/HTTP server run by the test (it shows the headers each request carried, which no
    backend's query API does). Read back:
    - ClickHouse (clickhouse-connect SELECT): every span is exactly one `otel_traces` row with
      every field of docs/clickhouse-schema.md#the-spans-table-otel_traces right (hex ids,
      `Server`/`Error` strings, nanosecond Timestamp and Duration, attribute maps, events,
      links, resource, scope);
    - the Kafka topic (aiokafka consumer), Jaeger (its query API, `/api/v3/traces/{id}`, raw)
      and the OTLP/HTTP server: every span exactly once with every field equal to what the SDK
      recorded, and the Resource, Scope and Span messages equal between Kafka and each of them;
    - every request at the OTLP/HTTP server carried `X-Scope-OrgID: tenant-a` (gzip-encoded,
      the default); each exporter counted exactly the spans as sent and none as failed.
    The `otlp` exporter sends the same header as gRPC metadata; Jaeger does not show
    metadata, so that one is exercised (an invalid key would fail every send), not observed.
(3) Outage and recovery per exporter. With load running (a thread posting 20-span requests,
    retrying 503/429), each backend is taken down in turn and brought back: the Kafka broker
    frozen (SIGSTOP), the ClickHouse endpoint stopped (connection refused), Jaeger frozen
    (SIGSTOP; the load's service is named for this test). Asserted: (a) every span the
    receiver accepted arrives at every backend, duplicates allowed, counted and printed, none
    missing; (b) during each outage the
    OTHER exporters' `otelcol_exporter_sent_spans_total` kept rising (sampled at the start and
    at the end of the outage window).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import pytest

from testkit.clickhouse_http import ClickHouseHTTP
from testkit.harness import BASE_CONFIG, Daemon, batch_processor, pipeline_overlay, wait_until
from testkit.kafka_broker import KafkaBroker, read_topic
from testkit.otel_traces_check import ROWS_SQL, assert_rows_match, send_agent_traces
from testkit.otlp_load import Load, agent_request
from testkit.jaeger import Jaeger
from testkit.otlp_sink import RecordingSink
from testkit.otlp_spans import assert_spans_once, expected_from_sdk, raw_spans, span_ids, spans_out

TOPIC = "fanout_spans"
TENANT = "tenant-a"
BACKENDS = ("kafka", "clickhouse", "otlp")  # exporter ids in the fan-out pipeline
OUTAGE_SERVICE = "fanout-outage-agent"  # the load's service in (3), so Jaeger is searched for it alone

# Queue sizing for (3): the load is ~20-span requests back to back (tens per second), and
# the batch processor turns them into about five batches a second (`timeout: 200ms`). Each
# exporter's queue holds 1000 batches, over three minutes of that load, while an outage here
# lasts a few seconds: the down exporter's queue never fills, so the receiver keeps accepting
# and the other exporters keep sending. Were it to fill on a slow machine, the refusal is
# retryable (HTTP 503 + Retry-After, counted as enqueue-failed) and the load retries the same
# request, so nothing accepted is lost either way; the test prints how many were refused.
EXPORTERS = """
  kafka:
    brokers: [%(broker)s]
    topic: %(topic)s
    timeout: 2s
    sending_queue: {queue_size: 1000}
    retry_on_failure: %(retry)s
  clickhouse:
    endpoint: %(clickhouse)s
    async_insert: false
    timeout: 10s
    sending_queue: {queue_size: 1000}
    retry_on_failure: %(retry)s
  otlp:
    endpoint: %(jaeger)s
    tls: {insecure: true}
    headers: {X-Scope-OrgID: %(tenant)s}
    timeout: 1s
    sending_queue: {queue_size: 1000}
    retry_on_failure: %(retry)s
"""
RETRY = "{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0}"
OTLPHTTP = """  otlphttp:
    endpoint: %(url)s
    headers: {X-Scope-OrgID: %(tenant)s}
    retry_on_failure: %(retry)s"""


def fanout_daemon(broker: KafkaBroker, clickhouse: ClickHouseHTTP, jaeger: Jaeger,
                  recorder: RecordingSink | None = None) -> Daemon:
    """The daemon: kafka, clickhouse and otlp to Jaeger (plus otlphttp to `recorder`) in one traces pipeline."""
    broker.create_topic(TOPIC)  # auto-creation is off, as on a production cluster
    extra = OTLPHTTP % {"url": recorder.url, "tenant": TENANT, "retry": RETRY} if recorder else ""
    exporters = EXPORTERS % {"broker": broker.bootstrap, "topic": TOPIC, "clickhouse": clickhouse.url,
                             "jaeger": jaeger.grpc_endpoint, "tenant": TENANT, "retry": RETRY}
    return Daemon(BASE_CONFIG, overlay=pipeline_overlay(exporters + extra, batch_processor("200ms")))


def sent(daemon: Daemon, exporter: str) -> float:
    return daemon.metric("otelcol_exporter_sent_spans_total", exporter=exporter)


@pytest.fixture
def recorder() -> Iterator[RecordingSink]:
    with RecordingSink() as running:
        yield running


# -- (1) end to end ------------------------------------------------------------------------------
def test_every_span_reaches_kafka_clickhouse_jaeger_and_the_otlphttp_recorder(kafka_broker, clickhouse_http,
                                                                              jaeger, recorder):
    with fanout_daemon(kafka_broker, clickhouse_http, jaeger, recorder) as daemon:
        spans = send_agent_traces(f"http://127.0.0.1:{daemon.ports['grpc']}")
        for exporter in (*BACKENDS, "otlphttp"):
            wait_until(lambda: sent(daemon, exporter) == len(spans), timeout=60, message=f"{exporter} sending")
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0

    want = expected_from_sdk(spans)
    traces = {fields["trace_id"] for fields in want.values()}
    wait_until(lambda: set(want) <= set(span_ids(jaeger.traces(traces))), timeout=30, message="spans in Jaeger")
    copies = {
        "kafka": [m.request for m in read_topic(kafka_broker, TOPIC, set(want))],
        "Jaeger (otlp, gRPC)": jaeger.traces(traces),
        "otlphttp recorder": recorder.requests(),
    }
    for where, requests_ in copies.items():
        assert_spans_once(spans_out(requests_), want, where)
    assert_same_messages(copies, set(want))

    client = clickhouse_http.client()
    try:
        assert_rows_match(list(client.query(ROWS_SQL.format(table="otel.otel_traces")).named_results()), spans)
    finally:
        client.close()

    assert recorder.received, "nothing reached the OTLP/HTTP recorder"
    for received in recorder.received:
        assert received.headers.get("x-scope-orgid") == TENANT, received.headers
        assert received.headers.get("content-encoding") == "gzip"
        assert received.headers.get("content-type") == "application/x-protobuf"


def assert_same_messages(copies: dict[str, list[Any]], span_ids: set[str]) -> None:
    """Kafka's Resource, Scope and Span messages of each span equal each other copy's, field for field."""
    (first, requests_), *others = copies.items()
    reference = raw_spans(requests_)
    for where, other_requests in others:
        other = raw_spans(other_requests)
        for span_id in span_ids:
            assert other[span_id] == reference[span_id], f"span {span_id}: {where} differs from {first}"


# -- (3) outage and recovery, per exporter ----------------------------------------------------------
@dataclass
class Outage:
    backend: str
    down: Callable[[], None]
    up: Callable[[], None]


@dataclass
class Window:
    """The other exporters' sent counts at the start and at the end of one outage."""

    backend: str
    start: dict[str, float]
    end: dict[str, float]


def sent_counts(daemon: Daemon) -> dict[str, float]:
    return {exporter: sent(daemon, exporter) for exporter in BACKENDS}


def retried(daemon: Daemon, exporter: str) -> float:
    return daemon.metric("agentdbg_exporter_retried_requests_total", exporter=exporter)


def run_outage(daemon: Daemon, load: Load, outage: Outage) -> Window:
    """Take one backend down until its exporter has retried three times and the receiver took 100 more
    requests (a few seconds), then bring it back and wait until it sends again."""
    retries, accepted = retried(daemon, outage.backend), load.requests_accepted

    def long_enough() -> bool:
        return retried(daemon, outage.backend) >= retries + 3 and load.requests_accepted >= accepted + 100

    outage.down()
    try:
        start = sent_counts(daemon)
        wait_until(long_enough, timeout=60, interval=0.1, message=f"{outage.backend} down: retries and load")
        end = sent_counts(daemon)
    finally:
        outage.up()
    wait_until(lambda: sent(daemon, outage.backend) > end[outage.backend], timeout=60, interval=0.1,
               message=f"{outage.backend} sending again")
    return Window(outage.backend, start, end)


def arrived_everywhere(kafka_broker: KafkaBroker, clickhouse: ClickHouseHTTP, jaeger: Jaeger,
                       accepted: set[str]) -> dict[str, list[str]]:
    """backend → span id of every copy it holds, once every accepted span is there."""
    wait_until(lambda: clickhouse.scalar("SELECT uniqExact(SpanId) FROM otel.otel_traces") >= len(accepted),
               timeout=120, interval=0.5, message="every accepted span in ClickHouse")
    wait_until(lambda: accepted <= set(span_ids(jaeger.service_spans(OUTAGE_SERVICE))), timeout=120, interval=0.5,
               message="every accepted span in Jaeger")
    client = clickhouse.client()
    try:
        stored = [row[0] for row in client.query("SELECT SpanId FROM otel.otel_traces").result_rows]
    finally:
        client.close()
    return {"kafka": [span_id for m in read_topic(kafka_broker, TOPIC, accepted, timeout=120)
                      for span_id in m.span_ids()],
            "clickhouse": stored, "otlp": span_ids(jaeger.service_spans(OUTAGE_SERVICE))}


def test_each_backend_down_in_turn_loses_nothing_and_stalls_no_other(kafka_broker, clickhouse_http, jaeger):
    outages = [Outage("kafka", kafka_broker.pause, kafka_broker.resume),
               Outage("clickhouse", clickhouse_http.stop, clickhouse_http.start),
               Outage("otlp", jaeger.pause, jaeger.resume)]
    with fanout_daemon(kafka_broker, clickhouse_http, jaeger) as daemon:
        with Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces",
                  partial(agent_request, service=OUTAGE_SERVICE)) as load:
            wait_until(lambda: min(sent_counts(daemon).values()) > 0, timeout=60, message="spans at every backend")
            windows = [run_outage(daemon, load, outage) for outage in outages]
        assert not load.errors, load.errors[:5]
        copies = arrived_everywhere(kafka_broker, clickhouse_http, jaeger, load.accepted)
        failed = daemon.metric("otelcol_exporter_send_failed_spans_total")
        refused = daemon.metric("otelcol_receiver_refused_spans_total")

    print(f"accepted {len(load.accepted)} spans in {load.requests_accepted} requests; "
          f"{load.refused} refusals retried by the client ({refused:.0f} spans refused)")
    for window in windows:
        print(f"{window.backend} down: " + ", ".join(
            f"{other} sent {window.start[other]:.0f} → {window.end[other]:.0f}"
            for other in BACKENDS if other != window.backend))
    for backend, ids in copies.items():
        print(f"{backend}: {len(ids)} copies, {len(ids) - len(set(ids))} duplicates, "
              f"{len(load.accepted - set(ids))} missing")

    for backend, ids in copies.items():
        assert load.accepted <= set(ids), f"{len(load.accepted - set(ids))} accepted spans never reached {backend}"
    for window in windows:
        for other in BACKENDS:
            if other != window.backend:
                assert window.end[other] > window.start[other], f"{other} stalled while {window.backend} was down"
    assert failed == 0
