"""pipeline/pdata/wire.py against the protobuf library's own encoding of real OTLP messages."""
from __future__ import annotations

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from pipeline.pdata.anyvalue import key_field
from pipeline.pdata.wire import field_end, fields, read_varint, varint, varint_size

NUMBERS = [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**32 - 1, 2**35 + 7, 2**63 - 1, 2**64 - 1]


@pytest.mark.parametrize("number", NUMBERS)
def test_varints_are_the_protobuf_librarys_and_read_back(number):
    encoded = varint(number)
    assert encoded == _VarintBytes(number)
    assert varint_size(number) == len(encoded)
    assert read_varint(b"\xff" + encoded + b"\x01", 1) == (number, 1 + len(encoded))


def test_a_varint_cut_short_is_refused():
    with pytest.raises(ValueError, match="truncated"):
        read_varint(varint(2**40)[:-1], 0)


def request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for r in range(3):
        rs = req.resource_spans.add(schema_url=f"https://schema/{r}")
        rs.resource.attributes.add(key="service.name").value.string_value = "s" * (50 * r + 1)
        scope = rs.scope_spans.add()
        for i in range(40 * r + 1):  # long enough for two-byte lengths
            span = scope.spans.add(name=f"op{i}", trace_id=b"\x01" * 16, span_id=bytes([i]) * 8,
                                   start_time_unix_nano=1_700_000_000_000_000_000 + i)
            span.attributes.add(key="i").value.int_value = -i  # a negative int64: a ten-byte varint
    return req


def test_fields_walk_a_request_as_the_parser_sees_it():
    req = request()
    wire = req.SerializeToString()
    top = list(fields(wire, 0, len(wire)))
    assert [number for number, _, _ in top] == [1, 1, 1]  # resource_spans
    for (_, start, end), rs in zip(top, req.resource_spans):
        assert wire[start:end] == rs.SerializeToString()
        inner = {number: (s, e) for number, s, e in fields(wire, start, end)}
        assert wire[slice(*inner[1])] == rs.resource.SerializeToString()
        assert wire[slice(*inner[3])] == rs.schema_url.encode()
    # field_end steps over each top-level field whole, whatever its wire type
    pos, ends = 0, []
    while pos < len(wire):
        pos = field_end(wire, pos)
        ends.append(pos)
    assert ends == [end for _, _, end in top]


def test_fields_step_over_varint_and_fixed_fields():
    span = request().resource_spans[2].scope_spans[0].spans[5]
    wire = span.SerializeToString()
    walked = {number: wire[s:e] for number, s, e in fields(wire, 0, len(wire))}
    # start_time (7) is fixed64 and not yielded; the length-delimited ones are, intact
    assert set(walked) == {1, 2, 5, 9}
    assert walked[5] == span.name.encode() and walked[9] == span.attributes[0].SerializeToString()


def test_a_truncated_field_is_refused():
    wire = request().SerializeToString()
    with pytest.raises(ValueError, match="truncated"):
        field_end(wire[:40], 0)


@pytest.mark.parametrize("key", ["tool.name", "k" * 200])
def test_key_field_is_how_a_key_value_encodes_its_key(key):
    kv = KeyValue(key=key)
    kv.value.string_value = "x"
    assert kv.SerializeToString().startswith(key_field(key))
