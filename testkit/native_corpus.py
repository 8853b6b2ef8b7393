"""The requests the compiled hot path's differential tests run (tests/unit/test_native_*.py):
the seeded agent fleet, every real client family's captured requests, and hand-made extremes.

- `fleet_requests()`: the benchmark load (testkit/fleet.py), seeded;
- `client_requests()`: per family, the OTLP requests its real instrumentation sent, captured
  once by tests/clients/capture_corpus.py into tests/clients/corpus/<family>.otlp (4-byte
  length-prefixed protobuf, what the file exporter writes);
- `extreme_requests()`: deep AnyValues up to the protobuf runtime's limit, 100,000 attributes,
  int64/u64/double edges, empty and unusual values, duplicated keys;
- `canon(value)`: a value with every type made explicit and NaN comparable, so `==` on two
  canons means same types, same values, same order.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from testkit.fleet import Fleet
from testkit.otlp_spans import read_proto_records

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "clients" / "corpus"
T0 = 1_700_000_000_000_000_000


def fleet_requests(count: int = 6, traces: int = 25, seed: int = 7) -> list[ExportTraceServiceRequest]:
    fleet = Fleet(seed=seed, error_rate=0.2, start_ns=T0)
    return [fleet.request(traces) for _ in range(count)]


def client_families() -> list[str]:
    return sorted(path.stem for path in CORPUS.glob("*.otlp"))


def client_requests(family: str) -> list[ExportTraceServiceRequest]:
    return read_proto_records(CORPUS / f"{family}.otlp")


def fill(target: AnyValue, value: Any) -> None:
    """Set `target` to the Python `value` (lists become arrays, dicts kvlists, None leaves it empty)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for item in value:
            fill(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            fill(target.kvlist_value.values.add(key=key).value, item)
    elif value is not None:
        target.string_value = value


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value, level] if level % 2 else {"k": value, "n": 1.5}
    return value


EXTREMES: tuple[Any, ...] = (
    -(2**63), 2**63 - 1, 0, -1, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e21, 1e-7, 0.1, 123456.789,
    float("nan"), float("inf"), float("-inf"), True, False, "", "é中🙂", "\x00ctl\n\"q\"\\", b"", b"\x00\xff",
    [], {}, [1, 2.5, "x", True, b"\x01", None, [float("nan"), float("inf")]], {"b": 1, "a": {"z": [], "y": None}},
    None, _deep(10), _deep(30),
)


def extreme_requests() -> list[ExportTraceServiceRequest]:
    """Requests at the edges of what a valid OTLP request holds."""
    out = []
    edge = ExportTraceServiceRequest()
    rs = edge.resource_spans.add()
    for i, value in enumerate(EXTREMES):
        fill(rs.resource.attributes.add(key=f"r{i}").value, value)
    scope = rs.scope_spans.add()
    scope.scope.name, scope.scope.version = "edge.scope", "0"
    for i, value in enumerate(EXTREMES):
        span = scope.spans.add(trace_id=bytes([i]) * 16, span_id=bytes([i]) * 8, name=f"edge{i}",
                               kind=[0, 5, 6, 2**31 - 1, -(2**31)][i % 5],
                               start_time_unix_nano=[0, 2**64 - 1, T0][i % 3],
                               end_time_unix_nano=[2**64 - 1, 0, T0][i % 3])
        fill(span.attributes.add(key="v").value, value)
        fill(span.attributes.add(key="v").value, "duplicate wins")  # a key twice: the later value wins
        fill(span.attributes.add(key=f"only{i}").value, value)
        span.attributes.add(key="unset")  # a KeyValue without a value
        span.status.code, span.status.message = [0, 1, 2, 99, -5][i % 5], "msg" if i % 2 else ""
        event = span.events.add(time_unix_nano=[0, 2**64 - 1][i % 2], name="exception" if i % 3 else "")
        fill(event.attributes.add(key="exception.type").value, value)
        link = span.links.add(trace_id=b"\xab" * (i % 17), span_id=b"\xcd" * 8, trace_state="a=b")
        fill(link.attributes.add(key="l").value, value)
    out.append(edge)
    wide = ExportTraceServiceRequest()
    span = wide.resource_spans.add().scope_spans.add().spans.add(name="wide", trace_id=b"\x01" * 16)
    for i in range(100_000):
        span.attributes.add(key=f"k{i % 50_000}").value.int_value = i  # 100k attributes, half of the keys twice
    out.append(wide)
    empty = ExportTraceServiceRequest()
    empty.resource_spans.add()  # a resource with no scopes
    empty.resource_spans.add().scope_spans.add()  # a scope with no spans
    out.append(empty)
    out.append(ExportTraceServiceRequest())
    return out


def canon(value: Any) -> Any:
    """`value` with types explicit (True is not 1, a tuple is not a list) and NaN equal to NaN."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    if isinstance(value, (int, str, bytes)) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [canon(item) for item in value])
    raise TypeError(f"unexpected {type(value)}")
