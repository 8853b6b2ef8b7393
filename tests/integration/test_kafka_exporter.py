"""The `kafka` exporter against a real Apache Kafka broker (testkit/kafka_broker.py), with the
product's default idempotent producer.

(a) End to end: the OpenTelemetry SDK sends known agent traces over OTLP/gRPC to the daemon
    (otlp → batch → several kafka exporters, one topic each); an aiokafka consumer reads
    them back and every span is compared field by field (ids, names, kinds, times,
    attributes, events, links, status, resource, scope): `otlp_proto`, `otlp_json` (ids hex
    in the JSON text), `partition_traces_by_id` (key = trace id hex, one trace per message)
    and every compression codec.
(b) Acceptance 4: a ~3 MB batch with `max_message_bytes: 1000000` arrives as several valid
    messages, none over the limit, holding every span once; a single 2 MB span is counted
    in `otelcol_exporter_send_failed_spans_total{error_type="message_too_large"}` with its
    size in the daemon log, while the rest of its batch and the spans sent after it arrive.
(c) Outage: the broker is frozen (SIGSTOP) while load runs, then thawed; every span the
    receiver accepted arrives (duplicates allowed and counted, none missing).
(d) In-process, same broker: events batches (`kafka_records()`) are produced keyed by
    subject; the default idempotent producer is accepted; refused credentials and a dead
    broker come out as the right permanent / retryable errors.
"""
from __future__ import annotations

import os
import re
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from exporters.kafka import KafkaConfig, KafkaExporter
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.events import Events
from pipeline.pdata.traces import Traces, iter_spans
from testkit import otlp_spans
from testkit.harness import BASE_CONFIG, Daemon, component, free_port, pipeline_overlay, wait_until
from testkit.kafka_broker import SCRAM_PASSWORD, SCRAM_USER, Message, decode_json, decode_proto, read_topic
from testkit.otlp_load import Load
from testkit.otlp_spans import assert_spans_once, expected_from_sdk, export_spans, otlp_exporter, spans_out

LIMIT = 1_000_000
CODECS = ("gzip", "snappy", "lz4", "zstd")
# exporter name → (topic, extra settings); every one with the default idempotent producer.
EXPORTERS = {
    "proto": ("spans_proto", ""),
    "json": ("spans_json", "encoding: otlp_json"),
    "bytrace": ("spans_bytrace", "partition_traces_by_id: true"),
    **{codec: (f"spans_{codec}", f"producer: {{compression: {codec}}}") for codec in CODECS},
}
OTHER_TOPICS = ("spans_outage", "agentdbg_triggers")


def exporter_yaml(name: str, topic: str, extra: str, broker: str) -> str:
    # Seven exporters producing a 3.3 MB batch at once on a loaded 2-core machine can take
    # longer than the default timeout; a timed-out send is retried whole (at least once), and
    # these tests count every span exactly once.
    lines = [f"  kafka/{name}:", f"    brokers: [{broker}]", f"    topic: {topic}", "    timeout: 30s"]
    if extra:
        lines.append(f"    {extra}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def broker(kafka_session_broker):
    """The run's broker with this module's topics (auto-creation is off), deleted afterwards."""
    topics = [topic for topic, _ in EXPORTERS.values()] + list(OTHER_TOPICS)
    for topic in topics:
        kafka_session_broker.create_topic(topic)
    yield kafka_session_broker
    kafka_session_broker.reset()


@pytest.fixture(scope="module")
def daemon(broker):
    exporters = "\n".join(exporter_yaml(name, topic, extra, broker.bootstrap)
                          for name, (topic, extra) in EXPORTERS.items())
    with Daemon(BASE_CONFIG, overlay=pipeline_overlay(exporters)) as running:
        yield running


# -- agent traces made with the OpenTelemetry SDK ---------------------------------------------
ATTRIBUTES = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "llama3.1:8b", "gen_ai.usage.input_tokens": 812,
              "gen_ai.request.temperature": 0.2, "agent.retry": False, "tags": ("plan", "tool"),
              "int.max": 2**63 - 1, "bytes": b"\x00\xff", "map": {"nested": "v", "n": 2}}


def agent_run(filler: int = 0) -> list[ReadableSpan]:
    """Two agent services, every span kind, events, links, statuses (testkit/otlp_spans.py);
    `filler` pads each span with an attribute of that many characters, to make large batches."""
    return otlp_spans.agent_run(ATTRIBUTES, filler=filler)


def send(daemon: Daemon, spans: list[ReadableSpan]) -> None:
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], timeout=30), spans)


def otlp_request(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request the SDK's exporters make of `spans`."""
    return encode_spans(spans)


# -- reading the topic back ---------------------------------------------------------------------
def normalise(messages: list[Message]) -> dict[str, list[dict[str, Any]]]:
    """span id hex → every copy of that span read, in the form `expected` uses."""
    return spans_out(m.request for m in messages)


def assert_every_span(messages: list[Message], want: dict[str, dict[str, Any]], topic: str) -> None:
    assert_spans_once(normalise(messages), want, topic)


def failed_spans(daemon: Daemon, exporter: str, error_type: str) -> float:
    return daemon.metric("otelcol_exporter_send_failed_spans_total", exporter=exporter, error_type=error_type)


# -- (a) end to end -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["proto", "json", *CODECS])
def test_every_span_arrives_field_by_field(daemon, broker, name):
    spans = agent_run()
    want = expected_from_sdk(spans)
    send(daemon, spans)
    topic = EXPORTERS[name][0]
    messages = read_topic(broker, topic, set(want), decode_json if name == "json" else decode_proto)
    assert_every_span(messages, want, topic)
    assert all(len(m.value) <= LIMIT for m in messages)


def test_json_messages_carry_hex_ids(daemon, broker):
    """OTLP/JSON, not proto3 JSON: trace and span ids are lowercase hex strings, not base64."""
    spans = agent_run()
    want = expected_from_sdk(spans)
    send(daemon, spans)
    messages = read_topic(broker, "spans_json", set(want), decode_json)
    text = b"".join(m.value for m in messages if set(m.span_ids()) & set(want))
    for span_id, fields in want.items():
        assert f'"spanId":"{span_id}"'.encode() in text
        assert f'"traceId":"{fields["trace_id"]}"'.encode() in text
    documents = [orjson.loads(m.value) for m in messages]
    assert all("resourceSpans" in document for document in documents)


def test_partition_traces_by_id_sends_one_trace_per_message_keyed_by_trace_id(daemon, broker):
    spans = agent_run() + agent_run()
    want = expected_from_sdk(spans)
    send(daemon, spans)
    messages = read_topic(broker, "spans_bytrace", set(want))
    assert_every_span(messages, want, "spans_bytrace")
    mine = [m for m in messages if set(m.span_ids()) & set(want)]
    assert len(mine) >= len({fields["trace_id"] for fields in want.values()})
    for message in mine:
        trace_ids = {span.trace_id.hex() for span in iter_spans(message.request)}
        assert trace_ids == {message.key.decode()}, "a message must hold exactly the trace of its key"
        assert re.fullmatch(r"[0-9a-f]{32}", message.key.decode())


# -- (b) Acceptance 4: too large ------------------------------------------------------------------
def big_batch() -> list[ReadableSpan]:
    """~3.3 MB: 300 agent runs' worth of spans, each padded with a 1 kB prompt attribute."""
    return [span for _ in range(330) for span in agent_run(filler=1000)]


@pytest.mark.parametrize("name,decode", [("proto", decode_proto), ("json", decode_json), ("bytrace", decode_proto)])
def test_a_3mb_batch_arrives_as_several_valid_messages(daemon, broker, name, decode):
    spans = big_batch()
    want = expected_from_sdk(spans)
    assert otlp_request(spans).ByteSize() > 3 * LIMIT
    too_large_before = failed_spans(daemon, f"kafka/{name}", "message_too_large")
    send(daemon, spans)
    topic = EXPORTERS[name][0]
    messages = read_topic(broker, topic, set(want), decode)
    mine = [m for m in messages if set(m.span_ids()) & set(want)]
    assert len(mine) >= 4, "3.3 MB under a 1 MB limit needs at least four messages"
    assert all(len(m.value) <= LIMIT for m in messages), "a message is over max_message_bytes"
    assert_every_span(messages, want, topic)
    assert failed_spans(daemon, f"kafka/{name}", "message_too_large") == too_large_before


def test_a_2mb_span_is_counted_and_logged_and_does_not_block(daemon, broker):
    huge, *rest = agent_run()
    huge_id = f"{huge.get_span_context().span_id:016x}"
    oversized = ReadableSpan(name=huge.name, context=huge.get_span_context(), parent=huge.parent,
                             resource=huge.resource, attributes={"gen_ai.prompt": "x" * 2_000_000},
                             kind=huge.kind, start_time=huge.start_time, end_time=huge.end_time,
                             instrumentation_scope=huge.instrumentation_scope)
    before = {name: failed_spans(daemon, f"kafka/{name}", "message_too_large") for name in EXPORTERS}
    send(daemon, [oversized, *rest])
    after = agent_run()
    send(daemon, after)
    want = expected_from_sdk(rest + after)
    for name, (topic, _) in EXPORTERS.items():
        messages = read_topic(broker, topic, set(want), decode_json if name == "json" else decode_proto)
        assert_every_span(messages, want, topic)
        assert huge_id not in normalise(messages)
        wait_until(lambda: failed_spans(daemon, f"kafka/{name}", "message_too_large") == before[name] + 1, timeout=30,
                   message=f"kafka/{name} counting the 2 MB span as message_too_large")
    log = daemon.log()
    line = next(line for line in log.splitlines() if "reason=message_too_large" in line and huge_id in line)
    size = int(re.search(r"is (\d+) bytes encoded", line).group(1))
    assert size > 2_000_000 and "max_message_bytes 1000000" in line


# -- (c) outage ------------------------------------------------------------------------------------
OUTAGE_EXPORTER = component("kafka", brokers="[BROKER]", topic="spans_outage", timeout="2s",
                            retry_on_failure="{initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0}")


def load_request() -> ExportTraceServiceRequest:
    """20 spans of two agent runs: every kind, events, links."""
    return otlp_request(agent_run()[:10] + agent_run()[:10])


def test_broker_outage_loses_nothing(broker, record_property):
    kafka_broker = broker
    overlay = pipeline_overlay(OUTAGE_EXPORTER.replace("BROKER", kafka_broker.bootstrap))
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        load = Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", load_request)
        load.start()
        try:
            sent = lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="kafka")  # noqa: E731
            wait_until(lambda: sent() > 0, timeout=30, message="spans reaching kafka before the outage")
            kafka_broker.pause()
            try:
                # Several rounds of timeouts and retries, with new data queueing meanwhile.
                wait_until(lambda: daemon.metric("agentdbg_exporter_retried_requests_total", exporter="kafka") >= 20,
                           timeout=60, message="the exporter retrying against the frozen broker")
                during = load.requests_accepted
                wait_until(lambda: load.requests_accepted >= during + 50, timeout=60,
                           message="the receiver accepting load while the broker is frozen")
            finally:
                kafka_broker.resume()
            after = load.requests_accepted
            wait_until(lambda: load.requests_accepted >= after + 20, timeout=60, message="load after the outage")
        finally:
            load.finish()
        assert not load.errors
        messages = read_topic(kafka_broker, "spans_outage", load.accepted, timeout=120)
        copies = [span_id for m in messages for span_id in m.span_ids()]
        duplicates = len(copies) - len(set(copies))
        record_property("accepted_spans", len(load.accepted))
        record_property("duplicate_spans", duplicates)
        print(f"outage: {len(load.accepted)} spans accepted, all arrived, {duplicates} duplicates, "
              f"{load.refused} requests refused and retried by the client")
        assert load.accepted <= set(copies)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total", exporter="kafka") == 0


# -- (d) in-process against the same broker -------------------------------------------------------
def exporter(**config: Any) -> KafkaExporter:
    settings = Settings.make(Kind.EXPORTER, ComponentID("kafka", "test"), Signal.TRACES)
    return KafkaExporter(settings, KafkaConfig.model_validate(config))


def small_traces() -> Traces:
    return Traces.from_wire(otlp_request(agent_run()[:3]).SerializeToString())


async def test_events_batches_go_out_as_json_keyed_by_subject(broker):
    documents = [{"schema": "agentdbg.trigger/v1", "id": os.urandom(8).hex(), "kind": "error_rate_spike",
                  "subject": {"service": "planner-agent"}, "subject_key": "service=planner-agent"},
                 {"schema": "agentdbg.trigger/v1", "id": os.urandom(8).hex(), "kind": "cost_budget",
                  "subject": {"agent": "travel"}, "subject_key": "agent=travel"}]
    kafka = exporter(brokers=[broker.bootstrap], topic="agentdbg_triggers")
    await kafka.start_client()
    try:
        assert await kafka.send(Events(documents)) is None
    finally:
        await kafka.stop_client()
    consumer = AIOKafkaConsumer("agentdbg_triggers", bootstrap_servers=broker.bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: dict[bytes, dict] = {}
    try:
        while len(got) < len(documents):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.update({record.key: orjson.loads(record.value) for record in records})
    finally:
        await consumer.stop()
    assert got == {doc["subject_key"].encode(): doc for doc in documents}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_refused_credentials_are_a_permanent_auth_error(broker, mechanism):
    kafka = exporter(brokers=[broker.sasl_bootstrap], topic="spans_proto",
                     sasl={"mechanism": mechanism, "username": SCRAM_USER, "password": "wrong"})
    with pytest.raises(PermanentError) as refused:
        await kafka.send(small_traces())
    await kafka.stop_client()
    assert refused.value.error_type == "auth" and SCRAM_USER in str(refused.value)


async def test_the_right_credentials_are_accepted(broker):
    spans = agent_run()[:3]
    kafka = exporter(brokers=[broker.sasl_bootstrap], topic="spans_proto",
                     sasl={"mechanism": "SCRAM-SHA-256", "username": SCRAM_USER, "password": SCRAM_PASSWORD})
    try:
        assert await kafka.send(Traces.from_wire(otlp_request(spans).SerializeToString())) is None
    finally:
        await kafka.stop_client()
    assert_every_span(read_topic(broker, "spans_proto", set(expected_from_sdk(spans))), expected_from_sdk(spans),
                      "spans_proto")


async def test_no_broker_is_retryable():
    kafka = exporter(brokers=[f"127.0.0.1:{free_port()}"])
    await kafka.start_client()  # must not raise: the daemon starts while Kafka is down
    with pytest.raises(RetryableError):
        await kafka.send(small_traces())
    await kafka.stop_client()
