"""The pure-Python reference of the compiled `SpanColumns` passes (native/, docs/native.md): the
test oracle of tests/unit/test_native_columns.py, never a production path.

It reads the parsed (upb) message the way `SpanColumns` did before the passes moved into the
extension, and gives every column by name, so a differential test compares the two span by span.
"""
from __future__ import annotations

from operator import attrgetter, sub
from typing import Any, Callable, Iterable, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata.anyvalue import TEXT_OF, TYPED_OF, Value, any_value_text, attribute_map

SERVICE_NAME = "service.name"
_EMPTY: tuple = ()


def attribute_pass(spans: Sequence, captured: Iterable[str]
                   ) -> tuple[list[dict[str, str]], dict[str, dict[int, Value]]]:
    """Per span `{key: text}` and the captured keys' `{span index: typed value}`."""
    rows: dict[str, dict[int, Value]] = {key: {} for key in captured}
    maps: list[dict[str, str]] = []
    for i, span in enumerate(spans):
        out: dict[str, str] = {}
        for kv in span.attributes:
            value = kv.value
            which = value.WhichOneof("value")
            out[kv.key] = TEXT_OF[which](value)
            if kv.key in rows:
                rows[kv.key][i] = TYPED_OF[which](value)
        maps.append(out)
    return maps, rows


def nested(spans: Sequence[Any], field: str, *getters: Callable[[Any], Any]) -> list[list[Sequence]]:
    """Per span, one list per getter over its repeated `field`; the shared empty tuple where it has none."""
    per_span = list(map(attrgetter(field), spans))
    return [[list(map(getter, items)) if items else _EMPTY for items in per_span] for getter in getters]


def _service_name(attributes: Iterable) -> str:
    for kv in attributes:
        if kv.key == SERVICE_NAME:
            return any_value_text(kv.value)
    return ""


def _attributes(item: Any) -> dict[str, str]:
    return attribute_map(item.attributes)


def _hex_of(name: str) -> Callable[[Any], str]:
    get = attrgetter(name)
    return lambda item: get(item).hex()


EAGER = ("trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_ns", "end_ns",
         "status_code", "status_message", "service", "resource_index", "scope_name", "scope_version")


def reference_columns(message: ExportTraceServiceRequest, captured: Iterable[str] = ()) -> dict[str, Any]:
    """Every column `SpanColumns` gives, by name, from the parsed message."""
    cols: dict[str, Any] = {name: [] for name in EAGER}
    cols.update(resource_services=[], resource_starts=[], resource_attribute_maps=[])
    spans: list[Any] = []
    for index, rs in enumerate(message.resource_spans):
        service = _service_name(rs.resource.attributes)
        cols["resource_services"].append(service)
        cols["resource_attribute_maps"].append(attribute_map(rs.resource.attributes))
        cols["resource_starts"].append(len(spans))
        for scope_spans in rs.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                spans.append(span)
                for name, value in (("trace_id", span.trace_id), ("span_id", span.span_id),
                                    ("parent_span_id", span.parent_span_id), ("trace_state", span.trace_state),
                                    ("name", span.name), ("kind", span.kind),
                                    ("start_ns", span.start_time_unix_nano), ("end_ns", span.end_time_unix_nano),
                                    ("status_code", span.status.code), ("status_message", span.status.message),
                                    ("service", service), ("resource_index", index),
                                    ("scope_name", scope.name), ("scope_version", scope.version)):
                    cols[name].append(value)
    cols["resource_starts"].append(len(spans))
    cols["duration_ns"] = list(map(sub, cols["end_ns"], cols["start_ns"]))
    cols["span_attributes"], cols["rows"] = attribute_pass(spans, captured)
    cols["events"] = tuple(nested(spans, "events", attrgetter("time_unix_nano"), attrgetter("name"), _attributes))
    cols["links"] = tuple(nested(spans, "links", _hex_of("trace_id"), _hex_of("span_id"),
                                 attrgetter("trace_state"), _attributes))
    return cols
