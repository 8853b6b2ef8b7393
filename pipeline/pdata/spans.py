"""`SpanColumns`: the columnar view of one batch of spans, built once and shared.

What it is: parallel Python lists, one entry per span in message order (resource by
resource, scope by scope), filled by the compiled extension (`agentdbg_native`, native/,
docs/native.md) in one walk over the batch's wire bytes: no per-span Python. Values that
belong to a resource or a scope (service name, resource attributes, scope name and version)
are read once per resource or scope and shared by its spans (one str object), never per span.

Who reads it: `Traces.columns` builds it lazily, once per batch, and every reader of that
batch shares it — the ClickHouse and chDB exporters (`pipeline/clickhouse/schema.py`
turns it into the `otel_traces` insert columns) and the streaming trigger detectors
(`connectors/triggers/` detectors, which read `service`, `name`, `duration_ns`, `status_code` and
`attribute(key)`). A processor that changes spans calls `Traces.mark_changed()`, which
drops the view; a view is never updated in place.

Eager columns (filled by `build`): `trace_id`, `span_id`, `parent_span_id` (raw bytes),
`trace_state`, `name`, `kind` (int), `start_ns`, `end_ns`, `duration_ns`, `status_code`
(int), `status_message`, `service` (resource `service.name`), `resource_index` (index
into `resources` / `resource_services`), `resource_starts` (where each resource's spans
begin, plus the end: a resource's spans are contiguous), `scope_name`, `scope_version`,
`resource_attribute_maps` (one `{key: text}` per resource).

Lazy columns (computed on first use, then cached): `message`, `spans` and `resources` (the
parsed request and its upb objects, for what the columns do not hold; the batch's own parse
when it has one), `trace_id_hex` / `span_id_hex` / `parent_span_id_hex`, `kind_name` /
`status_name` (ClickHouse strings `Server`, `Error` ...), `resource_attributes` (per span,
the same dict object for every span of a resource), `span_attributes` (dict[str, str] per
span), `events` and `links` (nested columns), `attribute(key)` / `attributes(keys)` /
`present(key)` (typed values, cached per key) and `resource_attribute(key)`.

One pass over span attributes, shared: converting every span's attributes to Python objects
is the dominant cost of every reader even in compiled code (one dict and one str per
attribute), so it happens once per batch. The attribute pass builds `span_attributes` (the text
maps ClickHouse stores) and, in the same loop, the typed columns of the batch's *captured*
keys: reading a captured key is then a dict lookup, and a captured key no span has is known
absent without any search. A key read without having been captured before the pass ran is
read by a scan of its own (skipped, for a key whose protobuf encoding does not occur in the
wire bytes): the same values, one more walk.

Attribute capture, the contract (per batch, nothing process-wide):
- A component that reads span attributes typed from every traces batch says which, as
  `span_attribute_keys` (the `SpanAttributeReader` protocol below): the triggers connector
  (its detectors' keys) and the genai_metrics exporter.
- When the graph is built, each pipeline's fan-out to its exporters takes the union of its
  readers' keys, and before offering a batch to them calls `Traces.capture(keys)`: the keys
  are known before any reader of the pipeline touches the batch, whatever their order. A
  reader also captures its own keys itself before it reads (so it works outside a graph).
- Capturing only records keys on the batch (`columns` is not built for it). The pass runs
  once, when a reader first needs `span_attributes` or a captured key's column; whoever that
  is pays for it and every later reader of the batch reuses it. The triggers connector runs
  it first on purpose (`prefetch`, timed as `agentdbg_trigger_prefetch_seconds`), so a
  ClickHouse exporter beside it finds its maps built; a pipeline without attribute readers
  captures nothing and its pass builds the text maps alone.
- Another pipeline's batch is another wrapper (`clone()`), with its own columns and
  captures: what one pipeline's readers want never costs another pipeline anything.

Every list and dict handed out is shared: treat them as read-only.

Values are converted to text and Python as anyvalue.py says (otelcol's `AsString` / `AsRaw`).
The extension takes bytes the protobuf runtime has accepted (the receivers parse every
request before it enters a pipeline); on bytes it cannot read it raises ValueError, never
crashes. Its pure-Python reference, the differential tests' oracle, is testkit/columns_reference.py.
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import is_not
from typing import Any, Callable, Iterable, NamedTuple, Protocol, Sequence, runtime_checkable

import agentdbg_native as native
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.lazy import lazy
from pipeline.pdata.anyvalue import Value, any_value_typed, key_field

KIND_NAMES: tuple[str, ...] = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_NAMES: tuple[str, ...] = ("Unset", "Ok", "Error")
SERVICE_NAME = "service.name"


@runtime_checkable
class SpanAttributeReader(Protocol):
    """A consumer that reads these span attributes, typed, from every traces batch it takes:
    the fan-out in front of it has the batch's attribute pass capture them (module docstring)."""

    @property
    def span_attribute_keys(self) -> frozenset[str]: ...


class EventColumns(NamedTuple):
    """Span events as nested columns: one list per span (empty spans share one empty tuple)."""

    timestamp_ns: list[Sequence[int]]
    name: list[Sequence[str]]
    attributes: list[Sequence[dict[str, str]]]


class LinkColumns(NamedTuple):
    """Span links as nested columns: ids in lowercase hex, attribute maps as text."""

    trace_id_hex: list[Sequence[str]]
    span_id_hex: list[Sequence[str]]
    trace_state: list[Sequence[str]]
    attributes: list[Sequence[dict[str, str]]]


def _hex(ids: list[bytes]) -> list[str]:
    return list(map(bytes.hex, ids))


# -- the view ---------------------------------------------------------------------------------

class SpanColumns:
    """Parallel per-span lists of one batch; see the module docstring for the full API."""

    trace_id: list[bytes]
    span_id: list[bytes]
    parent_span_id: list[bytes]
    trace_state: list[str]
    name: list[str]
    kind: list[int]
    start_ns: list[int]
    end_ns: list[int]
    duration_ns: list[int]
    status_code: list[int]
    status_message: list[str]
    service: list[str]
    resource_index: list[int]
    scope_name: list[str]
    scope_version: list[str]
    resource_services: list[str]
    # Resource r's spans are [resource_starts[r], resource_starts[r + 1]) (one more entry than resources).
    resource_starts: list[int]
    resource_attribute_maps: list[dict[str, str]]  # one `{key: text}` per resource (index with resource_index)

    def __init__(self, wire: bytes, message: Callable[[], ExportTraceServiceRequest] | None = None,
                 captured: frozenset[str] = frozenset()) -> None:
        self.wire = wire
        self._message = message
        # Keys whose typed columns the attribute pass fills (module docstring: attribute capture).
        self.captured = captured
        self._typed: dict[str, list[Value]] = {}
        self._rows: dict[str, dict[int, Value]] = {}  # attribute_rows of keys the pass did not capture

    @classmethod
    def build(cls, message: ExportTraceServiceRequest | Callable[[], ExportTraceServiceRequest] | None = None,
              wire: bytes | None = None, captured: frozenset[str] = frozenset()) -> "SpanColumns":
        """The eager columns, in one compiled walk over `wire` (serialised from `message` when
        not given). `message`, when given, must be what `wire` encodes: the parsed message or a
        function returning it (Traces passes its own, so the batch parses at most once); the
        columns that hand out upb objects (`spans`, `resources`) use it, parsing `wire` otherwise.
        `captured`: the keys the attribute pass is to fill (`capture` adds more until it runs).
        """
        if isinstance(message, ExportTraceServiceRequest):
            parsed = message
            getter: Callable[[], ExportTraceServiceRequest] | None = lambda: parsed  # noqa: E731
            if wire is None:
                wire = message.SerializeToString()
        else:
            getter = message
        if wire is None:
            raise ValueError("SpanColumns.build needs a message or wire bytes")
        cols = cls(wire, getter, captured)
        (cols.trace_id, cols.span_id, cols.parent_span_id, cols.trace_state, cols.name, cols.kind,
         cols.start_ns, cols.end_ns, cols.duration_ns, cols.status_code, cols.status_message, cols.service,
         cols.resource_index, cols.scope_name, cols.scope_version, cols.resource_services, cols.resource_starts,
         cols.resource_attribute_maps) = native.columns(wire)
        return cols

    def __len__(self) -> int:
        return len(self.trace_id)

    # -- lazy columns ---------------------------------------------------------------------------
    @lazy
    def message(self) -> ExportTraceServiceRequest:
        """The parsed request (the batch's own when it has one)."""
        if self._message is not None:
            return self._message()
        return ExportTraceServiceRequest.FromString(self.wire)

    @lazy
    def resources(self) -> list[Any]:
        """The upb Resource objects, one per ResourceSpans."""
        return [rs.resource for rs in self.message.resource_spans]

    @lazy
    def spans(self) -> list[Any]:
        """The upb span objects, in column order (for what the columns do not hold)."""
        out: list[Any] = []
        for rs in self.message.resource_spans:
            for scope_spans in rs.scope_spans:
                out.extend(scope_spans.spans)
        return out
    @lazy
    def trace_id_hex(self) -> list[str]:
        return _hex(self.trace_id)

    @lazy
    def span_id_hex(self) -> list[str]:
        return _hex(self.span_id)

    @lazy
    def parent_span_id_hex(self) -> list[str]:
        return _hex(self.parent_span_id)

    @lazy
    def kind_name(self) -> list[str]:
        """`Server`, `Client` ... as otelcol's `SpanKind.String()`; "" for unknown values."""
        return [KIND_NAMES[k] if 0 <= k < 6 else "" for k in self.kind]

    @lazy
    def status_name(self) -> list[str]:
        """`Unset`, `Ok`, `Error` as otelcol's `StatusCode.String()`; "" for unknown values."""
        return [STATUS_NAMES[c] if 0 <= c < 3 else "" for c in self.status_code]

    @lazy
    def resource_attributes(self) -> list[dict[str, str]]:
        """Per span, its resource's map: the same dict object for every span of a resource."""
        return list(map(self.resource_attribute_maps.__getitem__, self.resource_index))

    @lazy
    def span_attributes(self) -> list[dict[str, str]]:
        """Per span `{key: text}`, as ClickHouse's `Map(LowCardinality(String), String)` stores it."""
        return self._pass[0]

    @lazy
    def _pass(self) -> tuple[list[dict[str, str]], dict[str, dict[int, Value]]]:
        """The shared attribute pass: text maps and the captured keys' typed columns, stored
        together so two threads racing to build it each see a consistent pair."""
        maps, rows = native.attribute_pass(self.wire, self.captured, True)
        assert maps is not None  # asked for
        return maps, rows

    def capture(self, keys: frozenset[str]) -> None:
        """Have the attribute pass fill the typed columns of `keys` too, if it has not run yet
        (once it has, a key it did not capture is scanned when read: same values)."""
        if not keys <= self.captured and "_pass" not in self.__dict__:
            self.captured = self.captured | keys

    @lazy
    def _nested(self) -> tuple[EventColumns, LinkColumns]:
        times, names, attributes, trace_ids, span_ids, states, link_attributes = native.nested(self.wire)
        return EventColumns(times, names, attributes), LinkColumns(trace_ids, span_ids, states, link_attributes)

    @lazy
    def events(self) -> EventColumns:
        return self._nested[0]

    @lazy
    def links(self) -> LinkColumns:
        return self._nested[1]

    # -- typed attribute access (detectors) -----------------------------------------------------
    def attribute(self, key: str) -> list[Value]:
        """Per span, the typed value of span attribute `key`, or None where it is absent."""
        cached = self._typed.get(key)
        if cached is None:
            cached = self.attributes((key,))[key]
        return cached

    def attributes(self, keys: Iterable[str]) -> dict[str, list[Value]]:
        """Several span attributes as per-span columns: `{key: values}`. Captured keys come
        from the shared pass (run now if nobody has yet); the others from one scan of their own."""
        keys = tuple(keys)
        wanted = [key for key in dict.fromkeys(keys) if key not in self._typed]
        if wanted:
            rest = []
            for key in wanted:
                rows = self._captured_rows(key)
                if rows is None:
                    rest.append(key)
                else:
                    self._typed[key] = list(map(rows.get, range(len(self)))) if rows else self._absent
            if rest:
                self._typed.update(self._scan(rest))
        return {key: self._typed[key] for key in keys}

    def attribute_rows(self, key: str) -> dict[int, Value]:
        """`{span index: typed value}` of the spans that have attribute `key`, in span order:
        for a captured key straight from the shared pass, so a reader that wants only the
        spans having a key (tool calls, token counts, costs) costs nothing per other span."""
        rows = self._captured_rows(key)
        if rows is None:
            rows = self._rows.get(key)
            if rows is None:
                column = self.attribute(key)
                rows = self._rows[key] = {} if column is self._absent else {
                    i: column[i] for i in compress(range(len(column)), map(is_not, column, repeat(None)))}
        return rows

    def values_at(self, key: str, indices: Iterable[int]) -> list[Value]:
        """The typed values of attribute `key` at span `indices` (None where absent)."""
        return list(map(self.attribute_rows(key).get, indices))

    def present(self, key: str) -> bool:
        """True when at least one span has attribute `key` (free for a captured key)."""
        rows = self._captured_rows(key)
        if rows is not None:
            return bool(rows)
        return self.attribute(key) is not self._absent

    def _captured_rows(self, key: str) -> dict[int, Value] | None:
        """The pass's rows of `key`, or None when the key was not captured before the pass ran."""
        if key not in self.captured and "_pass" not in self.__dict__:
            return None
        return self._pass[1].get(key)

    @lazy
    def _absent(self) -> list[Value]:
        """The column of every key no span has: one shared list of None."""
        return [None] * len(self)

    def _scan(self, keys: list[str]) -> dict[str, list[Value]]:
        """The typed columns of keys the shared pass did not capture: one compiled walk for
        them all, skipped when no key's encoding occurs anywhere in the batch's bytes."""
        wire = self.wire
        scan = frozenset(key for key in keys if key_field(key) in wire)
        rows = native.attribute_pass(wire, scan, False)[1] if scan else {}
        n = len(self)
        return {key: list(map(rows[key].get, range(n))) if rows.get(key) else self._absent for key in keys}

    def resource_attribute(self, key: str) -> list[Value]:
        """Per span, the typed value of resource attribute `key` (computed per resource)."""
        per_resource: list[Value] = [None] * len(self.resources)
        for index, resource in enumerate(self.resources):
            for kv in resource.attributes:
                if kv.key == key:
                    per_resource[index] = any_value_typed(kv.value)
        return list(map(per_resource.__getitem__, self.resource_index))
