"""The compiled columns (native/, through `SpanColumns`) against the pure-Python reference
(testkit/columns_reference.py), span by span: every eager column, the text maps ClickHouse
stores, the typed columns the detectors read (captured by the pass and scanned on their own),
events, links and the ClickHouse insert columns built from them; on the seeded fleet, every
real client family's captured requests, hand-made extremes and the fuzz corpus. A request the
protobuf runtime refuses is still refused (the receivers parse first), and the extension only
ever answers it with a ValueError."""
from __future__ import annotations

import gc
from typing import Any

import agentdbg_native as native
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.clickhouse.schema import insert_columns
from pipeline.pdata.spans import KIND_NAMES, STATUS_NAMES, EventColumns, LinkColumns, SpanColumns
from pipeline.pdata.traces import Traces
from testkit.columns_reference import EAGER, reference_columns
from testkit.native_corpus import canon, client_families, client_requests, extreme_requests, fleet_requests
from tests.fuzz.budget import budget
from tests.fuzz.strategies import INVALID_UTF8, field, proto_bodies, trace_requests

WHOLE = (*EAGER, "duration_ns", "resource_services", "resource_starts", "resource_attribute_maps")


def keys_of(message: ExportTraceServiceRequest, most: int = 64) -> list[str]:
    """The request's span attribute keys (the first `most`), and one no span has."""
    found = {kv.key: None for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans
             for kv in s.attributes}
    return [*list(found)[:most], "absent.key"]


def assert_same_columns(message: ExportTraceServiceRequest) -> None:
    wire = message.SerializeToString()
    keys = keys_of(message)
    captured = frozenset(keys[::2])  # half from the shared pass, half scanned on their own
    want = reference_columns(message, keys)
    cols = SpanColumns.build(message, wire, captured)
    for name in WHOLE:
        assert canon(getattr(cols, name)) == canon(want[name]), name
    assert canon(cols.span_attributes) == canon(want["span_attributes"])
    for key in keys:
        rows = want["rows"][key]
        assert canon(cols.attribute(key)) == canon([rows.get(i) for i in range(len(cols))]), key
        if key not in captured:  # a scanned key's rows are the spans where it has a value
            rows = {i: value for i, value in rows.items() if value is not None}
        assert canon(cols.attribute_rows(key)) == canon(rows), key
    assert canon(tuple(cols.events)) == canon(want["events"])
    assert canon(tuple(cols.links)) == canon(want["links"])
    assert canon(insert_columns(cols)) == canon(insert_columns(ReferenceView(want)))  # type: ignore[arg-type]


class ReferenceView:
    """The reference's columns under SpanColumns' names, for insert_columns."""

    def __init__(self, want: dict[str, Any]) -> None:
        self.__dict__.update(want)
        self.events, self.links = EventColumns(*want["events"]), LinkColumns(*want["links"])
        for name in ("trace_id", "span_id", "parent_span_id"):
            setattr(self, f"{name}_hex", [i.hex() for i in want[name]])
        self.resource_attributes = [want["resource_attribute_maps"][r] for r in want["resource_index"]]
        self.kind_name = [KIND_NAMES[k] if 0 <= k < 6 else "" for k in want["kind"]]
        self.status_name = [STATUS_NAMES[c] if 0 <= c < 3 else "" for c in want["status_code"]]

    def __len__(self) -> int:
        return len(self.trace_id)


def test_the_seeded_fleet() -> None:
    for message in fleet_requests():
        assert_same_columns(message)


@pytest.mark.parametrize("family", client_families())
def test_every_client_family(family: str) -> None:
    requests = client_requests(family)
    assert requests, f"tests/clients/corpus/{family}.otlp holds no request"
    for message in requests:
        assert_same_columns(message)


def test_the_client_corpus_covers_every_family() -> None:
    assert client_families() == ["adk", "agentops", "langfuse", "logfire", "openinference", "openllmetry", "otel_v2"]


def test_extremes_deep_values_100k_attributes_edge_numbers() -> None:
    for message in extreme_requests():
        assert_same_columns(message)


@budget(0.5)
@given(trace_requests(deep=False))
def test_fuzzed_requests(message: ExportTraceServiceRequest) -> None:
    assert_same_columns(message)


def read_natively(wire: bytes) -> None:
    native.columns(wire)
    native.attribute_pass(wire, frozenset({"a", "deep"}), True)
    native.nested(wire)


@budget(1)
@given(proto_bodies())
def test_corrupted_bytes_refused_as_before_and_never_crash_the_extension(body: bytes) -> None:
    try:
        message = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError):
        with pytest.raises(DecodeError):
            Traces.from_wire(body)  # what every receiver does first: still refused
        try:
            read_natively(body)  # not reachable from a receiver; must still be an answer, not a crash
        except ValueError:
            pass
        return
    assert_same_columns(message)  # whatever the runtime accepts reads the same


@pytest.mark.parametrize("key", INVALID_UTF8)
def test_non_utf8_strings_are_a_value_error(key: bytes) -> None:
    body = field(1, field(2, field(2, field(9, field(1, key)))))  # a span attribute key that is not UTF-8
    with pytest.raises(DecodeError):
        Traces.from_wire(body)
    with pytest.raises(ValueError, match="UTF-8"):
        native.attribute_pass(body, frozenset(), True)


@pytest.mark.parametrize("body", [b"\x0a\x05\x12", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0f",
                                  b"\x0b\x0a\x00", b"\x00\x00"])
def test_truncated_and_malformed_framing_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        read_natively(body)


def test_a_batch_and_its_columns_are_freed_without_the_cyclic_gc() -> None:
    """The columns never hold a reference back to their batch: a dropped batch goes at once
    (the daemon raises the GC's thresholds, so a cycle would keep batches alive for long)."""
    wire = fleet_requests(count=1)[0].SerializeToString()
    gc.collect()
    gc.disable()
    try:
        batch = Traces.from_wire(wire)
        assert len(batch.columns.span_attributes) == batch.item_count and batch.columns.spans
        del batch
        assert gc.collect() == 0  # nothing was left for the collector: refcounting freed it all
    finally:
        gc.enable()
