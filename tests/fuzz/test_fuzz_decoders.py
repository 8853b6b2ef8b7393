"""Acceptance 2 (fuzz, in process): the decoders either give a well-formed result or raise
the error they document, for any input.

- `pipeline.otlp_json.decode`: a message that serialises, re-parses as protobuf (so a Kafka
  or OTLP consumer downstream can read it) and comes back the same through `encode`; or
  `JsonDecodeError`, which the receivers answer with 400 / INVALID_ARGUMENT. Nothing else:
  a RecursionError or TypeError would be a 500 at the HTTP receiver.
- the kafka receiver's record decoder (`KafkaReceiver._decode`, the function that turns one
  record into an item of a batch): an item that makes a batch, or None with the record
  counted as malformed (it logs and dead-letters it). Anything it raised would end the poll
  loop, so no record of that partition would be read again.
"""
from __future__ import annotations

import asyncio
import math
import sys
from contextlib import contextmanager
from typing import Iterator

import pytest
from aiokafka.structs import ConsumerRecord
from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlp_json
from pipeline.component import ComponentID, Kind, Settings
from receivers.kafka import KafkaReceiver, KafkaReceiverConfig, malformed_messages
from tests.fuzz.budget import budget
from tests.fuzz.strategies import (
    DEEP_PLACES, _dumps, deep_any_value, deep_json, json_bodies, json_values, kafka_values, proto_bodies,
)
from testkit.otlp_spans import each_span

any_body = st.one_of(json_bodies(), json_bodies(), json_values.map(_dumps), st.binary(max_size=256))


@contextmanager
def python_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit, as the daemon runs with: hypothesis raises it while
    a test runs, which would hide a RecursionError the daemon meets at 1,000 levels."""
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


def decode_or_documented_error(data: bytes, message_type: type) -> object | None:
    try:
        with python_recursion_limit():
            return otlp_json.decode(data, message_type)
    except otlp_json.JsonDecodeError as exc:
        assert str(exc), "the error must say what is wrong"
        return None


@pytest.mark.parametrize("place", DEEP_PLACES)
def test_json_nested_1000_levels_is_a_decode_error(place):
    """Point 8: 1,000 levels of nesting raised RecursionError (HTTP 500). Now JsonDecodeError,
    with a short message naming the limit (not 100 repetitions of 'Failed to parse field')."""
    for depth in (150, 1000):
        with pytest.raises(otlp_json.JsonDecodeError) as raised:
            otlp_json.decode(deep_json(place, depth), ExportTraceServiceRequest)
        assert len(str(raised.value)) < 200, str(raised.value)[:300]


def test_json_within_the_depth_limit_decodes_and_reparses_as_protobuf():
    """The deepest attribute the JSON limit lets through is one protobuf still parses."""
    depth = 47  # 5 objects above the attribute value, then 2 per level: the leaf 99 levels down
    message = otlp_json.decode(deep_json("attribute", depth), ExportTraceServiceRequest)
    assert ExportTraceServiceRequest.FromString(message.SerializeToString()) == message
    with pytest.raises(otlp_json.JsonDecodeError, match="nested more than 100 levels deep"):
        otlp_json.decode(deep_json("attribute", depth + 1), ExportTraceServiceRequest)


def test_the_deepest_protobuf_request_round_trips_through_otlp_json():
    """Found by the receiver fuzz: a request upb takes (38 levels of AnyValue, 101 messages)
    was written by the file exporter as a JSON line our decoder refused (its limit was 100
    messages, upb's is 101), so the exporter's own output could not be read back."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    deep_any_value(span.attributes.add(key="deep").value, 38)
    wire = request.SerializeToString()
    assert ExportTraceServiceRequest.FromString(wire) == request  # upb takes it
    again = otlp_json.decode(otlp_json.encode(request), ExportTraceServiceRequest)
    assert again.SerializeToString() == wire


@budget(2)
@given(body=proto_bodies())
def test_every_protobuf_request_upb_takes_round_trips_through_otlp_json(body):
    try:
        message = ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        return
    again = otlp_json.decode(otlp_json.encode(message), ExportTraceServiceRequest)
    # Unknown fields have no JSON form; NaN payloads come back as the one NaN JSON has.
    message.DiscardUnknownFields()
    assert again.SerializeToString(deterministic=True) == canonical_nans(message).SerializeToString(
        deterministic=True)


def canonical_nans(message: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """`message` with every NaN double replaced by float('nan') (JSON keeps no NaN payload)."""
    stack = [value for _, _, span in each_span([message]) for value in
             [kv.value for kv in span.attributes] + [kv.value for e in span.events for kv in e.attributes]]
    stack += [kv.value for rs in message.resource_spans for kv in rs.resource.attributes]
    while stack:
        value = stack.pop()
        which = value.WhichOneof("value")
        if which == "double_value" and math.isnan(value.double_value):
            value.double_value = math.nan
        elif which == "array_value":
            stack.extend(value.array_value.values)
        elif which == "kvlist_value":
            stack.extend(kv.value for kv in value.kvlist_value.values)
    return message


@budget(3)
@given(data=any_body, message_type=st.sampled_from((ExportTraceServiceRequest, ExportMetricsServiceRequest)))
@example(data=b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"18446744073709551616"}]}]}]}',
         message_type=ExportTraceServiceRequest)
@example(data=b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}', message_type=ExportTraceServiceRequest)
def test_otlp_json_decode_gives_a_message_or_a_decode_error(data, message_type):
    message = decode_or_documented_error(data, message_type)
    if message is None:
        return
    assert isinstance(message, message_type)
    wire = message.SerializeToString()
    assert message_type.FromString(wire) == message
    again = otlp_json.decode(otlp_json.encode(message), message_type)
    assert again.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)


def kafka_receiver(encoding: str) -> KafkaReceiver:
    cid = ComponentID("kafka", f"fuzz_{encoding}")
    return KafkaReceiver(Settings.make(Kind.RECEIVER, cid), KafkaReceiverConfig(encoding=encoding))


def record(value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic="fuzz", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k",
                          value=value, checksum=None, serialized_key_size=1, serialized_value_size=len(value),
                          headers=())


def malformed_count(receiver: KafkaReceiver) -> float:
    """`agentdbg_kafka_receiver_malformed_messages_total` of this receiver, every reason."""
    return sum(sample.value for metric in malformed_messages.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels.get("receiver") == str(receiver.id))


@pytest.mark.parametrize("encoding", ["json", "otlp_json", "otlp_proto"])
def test_kafka_record_decoder_gives_an_item_or_counts_a_malformed_record(encoding):
    receiver = kafka_receiver(encoding)

    @budget(2)
    @given(value=kafka_values(encoding))
    def decode_one(value: bytes) -> None:
        before = malformed_count(receiver)
        with python_recursion_limit():
            item = asyncio.run(receiver._decode(record(value)))
        if item is None:
            assert malformed_count(receiver) == before + 1, "a skipped record must be counted as malformed"
            return
        assert malformed_count(receiver) == before
        batch = receiver._batch([item])
        if encoding == "json":
            assert batch.item_count == 1  # one event document per record
            return
        request = ExportTraceServiceRequest.FromString(batch.wire())
        assert batch.item_count == sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)

    decode_one()
