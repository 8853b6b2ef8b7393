"""SpanColumns on hand-built requests: every column, ClickHouse strings, typed attributes, events, links,
and attribute capture (per batch, declared by the readers behind a fan-out)."""
from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from connectors.triggers import TriggersConnector
from connectors.triggers.config import TriggersConfig
from pipeline.clickhouse.schema import COLUMN_NAMES, insert_columns, schema_statements, ttl_clause
from pipeline.component import ComponentID, Kind, Settings
from pipeline.fanout import FanOut
from pipeline.pdata.anyvalue import any_value_text, format_double
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces
from testkit.consumers import Recording
from testkit.native_corpus import fill as _fill

T0 = 1_700_000_000_123_456_789


def _set(kv_list, key: str, value) -> None:
    kv = kv_list.add(key=key)
    _fill(kv.value, value)


def _span(scope, n: int, **fields):
    span = scope.spans.add(trace_id=bytes([n]) * 16, span_id=bytes([n]) * 8, name=f"op{n}",
                           start_time_unix_nano=T0 + n, end_time_unix_nano=T0 + n + 1000 * n)
    for key, value in fields.items():
        setattr(span, key, value)
    return span


@pytest.fixture
def request_two_resources() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _set(rs.resource.attributes, "service.name", "planner")
    _set(rs.resource.attributes, "deployment.environment", "prod")
    _set(rs.resource.attributes, "host.cpus", 8)
    scope = rs.scope_spans.add()
    scope.scope.name, scope.scope.version = "agent.sdk", "1.2.3"
    s1 = _span(scope, 1, kind=2, parent_span_id=b"\xaa" * 8, trace_state="k=v")
    s1.status.code, s1.status.message = 2, "tool failed"
    for key, value in (("gen_ai.request.model", "gpt-x"), ("gen_ai.usage.input_tokens", 1200),
                       ("temperature", 0.25), ("stream", True), ("blob", b"\x00\x01"),
                       ("tags", ["a", 1, 2.5, True]), ("meta", {"z": 1, "a": "b"}), ("nothing", None)):
        _set(s1.attributes, key, value)
    event = s1.events.add(time_unix_nano=T0 + 5, name="exception")
    _set(event.attributes, "exception.message", "boom")
    _set(event.attributes, "exception.count", 2)
    s1.events.add(time_unix_nano=T0 + 6, name="retry")
    link = s1.links.add(trace_id=b"\x0b" * 16, span_id=b"\x0c" * 8, trace_state="l=1")
    _set(link.attributes, "link.kind", "follows")
    _span(scope, 2, kind=3)
    scope2 = rs.scope_spans.add()
    scope2.scope.name = "other.scope"
    _span(scope2, 3, kind=1)
    rs.scope_spans.add()  # an empty scope adds nothing
    rs2 = req.resource_spans.add()  # no service.name
    _set(rs2.resource.attributes, "host.name", "h2")
    scope3 = rs2.scope_spans.add()
    s4 = _span(scope3, 4, kind=5)
    s4.status.code = 1
    _set(s4.attributes, "gen_ai.request.model", "small")
    _span(scope3, 5, kind=9)  # an enum value outside the known ones
    return req


def test_eager_columns(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    assert len(cols) == 5
    assert cols.trace_id == [bytes([n]) * 16 for n in range(1, 6)]
    assert cols.span_id == [bytes([n]) * 8 for n in range(1, 6)]
    assert cols.parent_span_id == [b"\xaa" * 8, b"", b"", b"", b""]
    assert cols.trace_state == ["k=v", "", "", "", ""]
    assert cols.name == ["op1", "op2", "op3", "op4", "op5"]
    assert cols.kind == [2, 3, 1, 5, 9]
    assert cols.start_ns == [T0 + n for n in range(1, 6)]
    assert cols.end_ns == [T0 + n + 1000 * n for n in range(1, 6)]
    assert cols.duration_ns == [1000 * n for n in range(1, 6)]
    assert cols.status_code == [2, 0, 0, 1, 0]
    assert cols.status_message == ["tool failed", "", "", "", ""]
    assert cols.service == ["planner", "planner", "planner", "", ""]
    assert cols.resource_index == [0, 0, 0, 1, 1]
    assert cols.scope_name == ["agent.sdk", "agent.sdk", "other.scope", "", ""]
    assert cols.scope_version == ["1.2.3", "1.2.3", "", "", ""]
    assert cols.resource_services == ["planner", ""]
    assert [s.name for s in cols.spans] == cols.name


def test_per_resource_values_are_shared(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    assert cols.service[0] is cols.service[1] is cols.service[2]
    assert cols.resource_attributes[0] is cols.resource_attributes[1] is cols.resource_attributes[2]
    assert cols.resource_attributes[3] is cols.resource_attributes[4]
    assert cols.resource_attribute_maps == [
        {"service.name": "planner", "deployment.environment": "prod", "host.cpus": "8"}, {"host.name": "h2"}]


def test_clickhouse_strings(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    assert cols.kind_name == ["Server", "Client", "Internal", "Consumer", ""]
    assert cols.status_name == ["Error", "Unset", "Unset", "Ok", "Unset"]
    assert cols.trace_id_hex[0] == "01" * 16
    assert cols.span_id_hex[4] == "05" * 8
    assert cols.parent_span_id_hex == ["aa" * 8, "", "", "", ""]


def test_span_attribute_text_maps(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    assert cols.span_attributes[0] == {
        "gen_ai.request.model": "gpt-x", "gen_ai.usage.input_tokens": "1200", "temperature": "0.25",
        "stream": "true", "blob": base64.b64encode(b"\x00\x01").decode(),
        "tags": '["a",1,2.5,true]', "meta": '{"a":"b","z":1}', "nothing": ""}
    assert cols.span_attributes[1:] == [{}, {}, {"gen_ai.request.model": "small"}, {}]


def test_typed_attributes_cached_and_in_one_pass(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    got = cols.attributes(["gen_ai.request.model", "gen_ai.usage.input_tokens", "temperature", "stream"])
    assert got["gen_ai.request.model"] == ["gpt-x", None, None, "small", None]
    assert got["gen_ai.usage.input_tokens"] == [1200, None, None, None, None]
    assert got["temperature"][0] == 0.25 and isinstance(got["stream"][0], bool)
    assert cols.attribute("gen_ai.request.model") is got["gen_ai.request.model"]  # cached per key
    assert cols.attribute("tags")[0] == ["a", 1, 2.5, True]
    assert cols.attribute("meta")[0] == {"z": 1, "a": "b"}
    assert cols.attribute("blob")[0] == b"\x00\x01"
    assert cols.attribute("nothing")[0] is None
    assert cols.attribute("missing") == [None] * 5
    assert cols.resource_attribute("host.cpus") == [8, 8, 8, None, None]
    assert cols.resource_attribute("host.name") == [None, None, None, "h2", "h2"]


def test_events_and_links(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    events, links = cols.events, cols.links
    assert events.timestamp_ns[0] == [T0 + 5, T0 + 6]
    assert events.name[0] == ["exception", "retry"]
    assert events.attributes[0] == [{"exception.message": "boom", "exception.count": "2"}, {}]
    assert all(len(e) == 0 for e in events.name[1:])
    assert links.trace_id_hex[0] == ["0b" * 16]
    assert links.span_id_hex[0] == ["0c" * 8]
    assert links.trace_state[0] == ["l=1"]
    assert links.attributes[0] == [{"link.kind": "follows"}]
    assert all(len(x) == 0 for x in links.trace_id_hex[1:])


def test_empty_request():
    cols = SpanColumns.build(ExportTraceServiceRequest())
    assert len(cols) == 0 and cols.duration_ns == [] and cols.span_attributes == []
    assert cols.attributes(["a"]) == {"a": []}
    assert all(len(column) == 0 for column in insert_columns(cols))


def test_traces_columns_built_once_and_dropped_on_change(request_two_resources):
    batch = Traces.from_wire(request_two_resources.SerializeToString())
    assert batch.columns is batch.columns
    first = batch.columns
    batch.message.resource_spans[0].scope_spans[0].spans[0].name = "renamed"
    batch.mark_changed()
    assert batch.columns is not first and batch.columns.name[0] == "renamed"


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (0.1, "0.1"), (-0.0, "-0"), (1e21, "1000000000000000000000"), (1.5e-7, "0.00000015"),
    (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (123456.789, "123456.789"),
])
def test_doubles_as_otelcol_writes_them(value, text):
    assert format_double(value) == text


def test_any_value_text_of_nested_values():
    value = AnyValue()
    _fill(value, {"b": [1, {"c": None}], "a": b"\xff"})
    assert orjson.loads(any_value_text(value)) == {"a": "/w==", "b": [1, {"c": None}]}
    assert any_value_text(AnyValue()) == ""


def test_insert_columns_follow_the_schema(request_two_resources):
    cols = SpanColumns.build(request_two_resources)
    data = dict(zip(COLUMN_NAMES, insert_columns(cols)))
    assert len(data) == len(COLUMN_NAMES) and all(len(column) == 5 for column in data.values())
    assert data["Timestamp"][0] == T0 + 1 and data["Duration"][1] == 2000
    assert data["SpanKind"][0] == "Server" and data["StatusCode"][0] == "Error"
    assert data["ServiceName"][0] == "planner" and data["ResourceAttributes"][0]["deployment.environment"] == "prod"
    assert data["Events.Name"][0] == ["exception", "retry"] and data["Links.TraceId"][0] == ["0b" * 16]


def test_negative_duration_is_clamped_for_uint64():
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(start_time_unix_nano=10, end_time_unix_nano=5)
    assert span.name == ""
    cols = SpanColumns.build(req)
    assert cols.duration_ns == [-5]
    assert dict(zip(COLUMN_NAMES, insert_columns(cols)))["Duration"] == [0]


def test_schema_statements_and_ttl():
    statements = schema_statements("otel", "otel_traces", 3 * 86400)
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `otel`"
    assert "TTL toDateTime(Timestamp) + toIntervalDay(3)" in statements[1]
    assert "PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))" in statements[1]
    assert "`otel`.`otel_traces_trace_id_ts`" in statements[2] and "AggregatingMergeTree" in statements[2]
    assert "`otel`.`otel_traces_trace_id_ts_mv`" in statements[3]
    assert ttl_clause(0, "x") == "" and ttl_clause(7200, "x") == "TTL x + toIntervalHour(2)"
    assert ttl_clause(90, "x") == "TTL x + toIntervalSecond(90)"
    assert ttl_clause(120, "x") == "TTL x + toIntervalMinute(2)"


def test_absent_keys_known_from_the_wire_bytes(request_two_resources):
    wire = request_two_resources.SerializeToString()
    cols = Traces.from_wire(wire).columns
    assert cols.wire == wire
    got = cols.attributes(["gen_ai.request.model", "not.there"])
    assert got["not.there"] == [None] * 5
    assert got["gen_ai.request.model"] == ["gpt-x", None, None, "small", None]


# -- attribute capture ----------------------------------------------------------------------------
READ = ["gen_ai.request.model", "gen_ai.usage.input_tokens", "tags", "not.there"]


def test_captured_keys_come_from_the_one_attribute_pass_with_the_values_a_scan_gives(request_two_resources):
    wire = request_two_resources.SerializeToString()
    captured, plain = Traces.from_wire(wire), Traces.from_wire(wire)
    captured.capture(frozenset(READ))
    cols = captured.columns
    got = cols.attributes(READ)
    assert "_pass" in cols.__dict__  # read from the shared pass ...
    expected = plain.columns.attributes(READ)
    assert "_pass" not in plain.columns.__dict__  # ... where the uncaptured batch scanned per key
    assert got == expected
    assert got["gen_ai.request.model"] == ["gpt-x", None, None, "small", None]
    assert got["not.there"] == [None] * 5
    assert cols.attribute_rows("gen_ai.usage.input_tokens") == {0: 1200}
    assert cols.present("tags") and not cols.present("not.there")
    assert cols.span_attributes == plain.columns.span_attributes


def test_a_key_captured_after_the_pass_ran_is_scanned_with_the_same_values(request_two_resources):
    batch = Traces.from_wire(request_two_resources.SerializeToString())
    batch.capture(frozenset({"temperature"}))
    assert batch.columns.span_attributes[0]["temperature"] == "0.25"  # a ClickHouse exporter ran the pass first
    batch.capture(frozenset({"gen_ai.request.model"}))  # a reader declaring late
    assert batch.columns.captured == frozenset({"temperature"})
    assert batch.columns.attribute("gen_ai.request.model") == ["gpt-x", None, None, "small", None]
    assert batch.columns.attribute_rows("temperature") == {0: 0.25}


def connector() -> TriggersConnector:
    return TriggersConnector(Settings.make(Kind.CONNECTOR, ComponentID("triggers")), TriggersConfig())


def test_capture_is_per_batch_not_process_wide(request_two_resources):
    wire = request_two_resources.SerializeToString()
    triggers = connector()
    assert "gen_ai.request.model" in triggers.span_attribute_keys
    batch = Traces.from_wire(wire)
    batch.capture(triggers.span_attribute_keys)
    assert batch.columns.captured == triggers.span_attribute_keys
    # Building a reader, or another batch capturing, changes nothing for any other batch ...
    assert Traces.from_wire(wire).columns.captured == frozenset()
    # ... nor for the wrapper another pipeline gets.
    assert batch.clone().columns.captured == frozenset()


@dataclass
class Reader(Recording):
    """A consumer that reads span attributes typed, as the triggers connector does."""

    keys: frozenset[str] = frozenset()

    @property
    def span_attribute_keys(self) -> frozenset[str]:
        return self.keys

    async def consume(self, batch) -> None:
        await super().consume(batch)
        self.seen = (batch.columns.captured, batch.columns.attributes(sorted(self.keys)))


def test_a_fan_out_has_each_batch_capture_every_readers_keys_before_the_first_reads(request_two_resources):
    first = Reader(keys=frozenset({"gen_ai.request.model"}))
    second = Reader(keys=frozenset({"gen_ai.usage.input_tokens"}))
    triggers, plain = connector(), Recording()
    fan = FanOut([first, plain, triggers, second])
    assert fan.captured == first.keys | second.keys | triggers.span_attribute_keys
    assert FanOut([plain]).captured == frozenset()
    batch = Traces.from_wire(request_two_resources.SerializeToString())
    asyncio.run(fan.consume(batch))
    captured, values = first.seen
    assert captured == fan.captured  # the first reader already finds the later readers' keys captured
    assert values == {"gen_ai.request.model": ["gpt-x", None, None, "small", None]}
    assert second.seen[1] == {"gen_ai.usage.input_tokens": [1200, None, None, None, None]}
    assert [b is batch for b in plain.batches] == [True]

