"""Splitting batches to fit Kafka messages: `exporters.kafka.split`'s `wire_ranges`, `chunk_by_size`,
`split_by_key` and the kafka exporter's `RecordEncoder` built on them (plus its config's safe defaults)."""
from __future__ import annotations

import os
import random

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from exporters.kafka.config import KafkaConfig
from exporters.kafka.records import RecordEncoder, value_budget
from exporters.kafka.split import chunk_by_size, split_by_key, wire_ranges
from pipeline import otlp_json
from pipeline.pdata.events import Events
from pipeline.pdata.traces import Traces, count_spans, iter_spans


def request(resources: int = 3, scopes: int = 2, spans: int = 40, max_name: int = 3000,
            seed: int = 1) -> ExportTraceServiceRequest:
    """Spans of random sizes under several resources and scopes, over a handful of traces."""
    rng = random.Random(seed)
    traces = [rng.randbytes(16) for _ in range(5)]
    out = ExportTraceServiceRequest()
    for r in range(resources):
        rs = out.resource_spans.add(schema_url=f"https://schema/{r}")
        rs.resource.attributes.add(key="service.name").value.string_value = f"agent-{r}"
        for s in range(scopes):
            scope = rs.scope_spans.add(schema_url="https://scope")
            scope.scope.name, scope.scope.version = f"scope-{s}", "1.0"
            for _ in range(spans):
                span = scope.spans.add(trace_id=rng.choice(traces), span_id=rng.randbytes(8),
                                       name="n" * rng.randint(1, max_name))
                span.attributes.add(key="gen_ai.request.model").value.string_value = "llama3"
    return out


def placed(message: ExportTraceServiceRequest) -> list[tuple[str, str, bytes]]:
    """Every span with the resource and scope it sits under, in order."""
    return [(rs.resource.attributes[0].value.string_value, scope.scope.name + rs.schema_url + scope.schema_url,
             span.SerializeToString())
            for rs in message.resource_spans for scope in rs.scope_spans for span in scope.spans]


# -- chunk_by_size ------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [4_000, 20_000, 100_000])
def test_chunks_fit_and_keep_every_span_in_order_with_its_headers(limit):
    message = request()
    chunks = list(chunk_by_size(message, limit))
    assert len(chunks) > 1
    for chunk, count, bound in chunks:
        assert chunk.ByteSize() <= bound, "the planned size must be an upper bound"
        assert count == count_spans(chunk)
        if count > 1:
            assert bound <= limit
    assert [item for chunk, _, _ in chunks for item in placed(chunk)] == placed(message)


def test_chunks_are_valid_requests_on_the_wire():
    message = request()
    for chunk, _, _ in chunk_by_size(message, 10_000):
        assert ExportTraceServiceRequest.FromString(chunk.SerializeToString()) == chunk


def test_a_span_too_large_alone_comes_as_its_own_request_over_the_limit():
    message = request(resources=1, scopes=1, spans=5, max_name=10)
    message.resource_spans[0].scope_spans[0].spans[2].name = "x" * 50_000
    chunks = list(chunk_by_size(message, 10_000))
    oversize = [(chunk, count, bound) for chunk, count, bound in chunks if bound > 10_000]
    assert len(oversize) == 1
    chunk, count, bound = oversize[0]
    assert count == 1 and next(iter_spans(chunk)).name == "x" * 50_000 and bound >= 50_000
    assert sum(count for _, count, _ in chunks) == 5


def test_a_batch_that_fits_is_one_chunk():
    message = request(spans=3, max_name=10)
    [(chunk, count, bound)] = chunk_by_size(message, 1_000_000)
    assert chunk == message and count == count_spans(message) and bound >= message.ByteSize()


def test_planned_size_is_tight():
    """The bound only over-counts length prefixes, a few bytes per resource and scope."""
    message = request()
    for chunk, _, bound in chunk_by_size(message, 20_000):
        headers = sum(1 + len(rs.scope_spans) for rs in chunk.resource_spans)
        assert bound - chunk.ByteSize() <= 6 * headers


# -- wire_ranges ------------------------------------------------------------------------------------
def merged_wire(requests_: int = 6) -> bytes:
    """What the batch processor makes: requests concatenated on the wire."""
    return b"".join(request(spans=20, max_name=800, seed=seed).SerializeToString() for seed in range(requests_))


def test_wire_ranges_cut_between_resources_into_valid_requests():
    wire = merged_wire()
    limit = 60_000
    ranges = list(wire_ranges(wire, limit))
    assert len(ranges) > 1 and all(fits for _, _, fits in ranges)
    assert b"".join(wire[start:end] for start, end, _ in ranges) == wire
    parts = [ExportTraceServiceRequest.FromString(wire[start:end]) for start, end, _ in ranges]
    assert all(len(part.SerializeToString()) <= limit for part in parts)
    whole = ExportTraceServiceRequest.FromString(wire)
    assert [item for part in parts for item in placed(part)] == placed(whole)


def test_wire_ranges_flag_a_resource_too_large_alone():
    big = request(resources=1, spans=50, max_name=3000, seed=9).SerializeToString()
    wire = merged_wire(2) + big + merged_wire(1)
    ranges = list(wire_ranges(wire, 50_000))
    flagged = [(start, end) for start, end, fits in ranges if not fits]
    assert len(flagged) == 1 and wire[flagged[0][0]:flagged[0][1]] == big
    assert b"".join(wire[start:end] for start, end, _ in ranges) == wire


def test_wire_ranges_refuse_truncated_bytes():
    with pytest.raises(ValueError, match="truncated"):
        list(wire_ranges(merged_wire(1)[:-3], 10_000))


def test_a_large_unchanged_batch_is_cut_on_the_wire_not_re_serialised():
    wire = merged_wire()
    encoded = RecordEncoder("otlp_proto", False, 60_000).encode(Traces.from_wire(wire))
    assert len(encoded.records) > 1 and not encoded.oversize
    assert b"".join(record.value for record in encoded.records) == wire


# -- split_by_key -------------------------------------------------------------------------------
def test_split_by_key_gives_one_trace_per_request_with_headers():
    message = request()
    groups = split_by_key(message, [span.trace_id for span in iter_spans(message)])
    assert len(groups) == 5
    for trace_id, (part, count) in groups.items():
        assert {span.trace_id for span in iter_spans(part)} == {trace_id}
        assert count == count_spans(part)
    regrouped = sorted(item for part, _ in groups.values() for item in placed(part))
    assert regrouped == sorted(placed(message))


# -- RecordEncoder --------------------------------------------------------------------------------
def test_an_unchanged_batch_that_fits_goes_out_as_its_wire_bytes():
    wire = request(spans=3, max_name=10).SerializeToString()
    batch = Traces.from_wire(wire)
    encoded = RecordEncoder("otlp_proto", False, 1_000_000).encode(batch)
    assert [record.value for record in encoded.records] == [wire]
    assert encoded.records[0].value is wire, "passthrough must not copy or re-serialise"
    assert encoded.records[0].key is None and not encoded.oversize


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_a_large_batch_becomes_records_that_each_fit(encoding):
    message = request(spans=200)
    limit = 50_000
    encoded = RecordEncoder(encoding, False, limit).encode(Traces.from_message(message))
    assert len(encoded.records) > 1 and not encoded.oversize
    decode = ExportTraceServiceRequest.FromString if encoding == "otlp_proto" else (
        lambda value: otlp_json.decode(value, ExportTraceServiceRequest))
    parts = [decode(record.value) for record in encoded.records]
    assert [item for part in parts for item in placed(part)] == placed(message)
    for record in encoded.records:
        # What aiokafka checks against max_request_size (= max_message_bytes) before sending.
        assert DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, []) <= limit


def test_oversize_spans_are_reported_with_their_size_and_the_rest_still_goes():
    message = request(resources=1, scopes=1, spans=10, max_name=100)
    big = message.resource_spans[0].scope_spans[0].spans[4]
    big.name = "y" * 200_000
    encoded = RecordEncoder("otlp_proto", False, 100_000).encode(Traces.from_message(message))
    assert encoded.rejected == 1
    [oversize] = encoded.oversize
    assert oversize.size > 200_000 and big.span_id.hex() in oversize.what and "…" in oversize.what
    sent = [span.span_id for record in encoded.records
            for span in iter_spans(ExportTraceServiceRequest.FromString(record.value))]
    assert len(sent) == 9 and big.span_id not in sent


def test_partition_by_trace_keys_each_record_with_its_trace_id_hex():
    message = request(spans=100)
    encoded = RecordEncoder("otlp_proto", "trace_id", 30_000).encode(Traces.from_message(message))
    seen = 0
    for record in encoded.records:
        spans = list(iter_spans(ExportTraceServiceRequest.FromString(record.value)))
        assert {span.trace_id.hex().encode() for span in spans} == {record.key}
        seen += len(spans)
    assert seen == count_spans(message)


def test_events_batches_pass_through_as_their_own_records():
    documents = [{"subject_key": "service=a", "kind": "cost_budget"}, {"subject_key": "x", "blob": "z" * 5000}]
    encoded = RecordEncoder("otlp_proto", False, 2048).encode(Events(documents))
    assert [record.key for record in encoded.records] == [b"service=a"]
    assert encoded.rejected == 1 and "'x'" in encoded.oversize[0].what


def test_value_budget_leaves_room_for_the_record_overhead():
    for key in (None, os.urandom(16).hex().encode()):
        budget = value_budget(1_000_000, key)
        assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"v" * budget, []) <= 1_000_000


# -- config ------------------------------------------------------------------------------------------
def test_defaults_are_safe_and_otelcol_named():
    config = KafkaConfig()
    assert config.brokers == ["localhost:9092"] and config.topic == "otlp_spans"
    assert config.encoding == "otlp_proto" and not config.partition_traces_by_id
    assert config.producer.required_acks == "all" and config.producer.enable_idempotence
    assert config.producer.max_message_bytes == 1_000_000 and config.producer.compression == "none"


@pytest.mark.parametrize("acks,expected", [("all", "all"), (-1, "all"), ("-1", "all"), (1, 1), (0, 0)])
def test_required_acks_spellings(acks, expected):
    producer = {"required_acks": acks, "enable_idempotence": expected == "all"}
    assert KafkaConfig.model_validate({"producer": producer}).producer.required_acks == expected


def test_idempotence_without_acks_all_and_unknown_keys_are_errors():
    with pytest.raises(ValidationError, match="required_acks: all"):
        KafkaConfig.model_validate({"producer": {"required_acks": 1}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        KafkaConfig.model_validate({"producer": {"acks": "all"}})
    with pytest.raises(ValidationError, match="host:port"):
        KafkaConfig.model_validate({"brokers": ["localhost"]})
