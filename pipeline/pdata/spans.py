"""`SpanColumns`: the columnar view of one batch of spans, built once and shared.

What it is: parallel Python lists, one entry per span in message order (resource by
resource, scope by scope), filled in a single pass over the parsed OTLP message. Values
that belong to a resource or a scope (service name, resource attributes, scope name and
version) are read once per resource or scope and shared by its spans, never per span.

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
begin, plus the end: a resource's spans are contiguous), `scope_name`, `scope_version`.

Lazy columns (computed on first use, then cached): `spans` (the upb span objects),
`trace_id_hex` / `span_id_hex` / `parent_span_id_hex`, `kind_name` / `status_name`
(ClickHouse strings `Server`, `Error` ...), `resource_attribute_maps` (one dict per
resource) and `resource_attributes` (per span, the same dict object for every span of a
resource), `span_attributes` (dict[str, str] per span), `events` and `links` (nested
columns), `attribute(key)` / `attributes(keys)` / `present(key)` (typed values, cached per
key) and `resource_attribute(key)`.

One pass over span attributes, shared: walking every span's attributes in Python is the
dominant cost of every reader (about 0.1 µs per attribute, against ~0.05 µs per span to
parse), so it happens once per batch. The attribute pass builds `span_attributes` (the text
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
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter, is_not, sub
from typing import Any, Callable, Iterable, NamedTuple, Protocol, Sequence, runtime_checkable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.lazy import lazy
from pipeline.pdata.anyvalue import TEXT_OF, TYPED_OF, Value, any_value_text, any_value_typed, attribute_map, key_field

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


_EMPTY: tuple = ()


def _nested(spans: Sequence[Any], field: str, *getters: Callable[[Any], Any]) -> list[list[Sequence]]:
    """Per span, the list of `getter(item)` for each item of its repeated `field` (events, links),
    one column per getter; a span without any gets the shared empty tuple in every column."""
    per_span = list(map(attrgetter(field), spans))
    return [[list(map(getter, items)) if items else _EMPTY for items in per_span] for getter in getters]


def _attributes(item: Any) -> dict[str, str]:
    return attribute_map(item.attributes)


def _hex_of(name: str) -> Callable[[Any], str]:
    get = attrgetter(name)
    return lambda item: get(item).hex()


def attribute_pass(spans: Sequence, captured: Iterable[str]
                   ) -> tuple[list[dict[str, str]], dict[str, dict[int, Value]]]:
    """Per span `{key: text}` and, in the same loop, the typed values of the `captured` keys.

    Returns (maps, rows): `rows[key]` is `{span index: typed value}` for the spans that have
    the key (empty when none has it): one dict store per captured attribute met, and a
    reader that wants the spans having a key gets them without a scan. Strings take the
    fast path: a non-empty `string_value` is both the text and the typed value, with no
    `WhichOneof`.
    """
    rows: dict[str, dict[int, Value]] = {key: {} for key in captured}
    text_of, typed_of = TEXT_OF, TYPED_OF
    maps: list[dict[str, str]] = []
    append = maps.append
    i = 0
    for span in spans:
        out: dict[str, str] = {}
        for kv in span.attributes:
            key = kv.key
            value = kv.value
            text = value.string_value
            if text:
                out[key] = text
                if key in rows:
                    rows[key][i] = text
            else:
                which = value.WhichOneof("value")
                out[key] = text_of[which](value)
                if key in rows:
                    rows[key][i] = typed_of[which](value)
        append(out)
        i += 1
    return maps, rows


def _service_name(attributes: Iterable) -> str:
    for kv in attributes:
        if kv.key == SERVICE_NAME:
            return any_value_text(kv.value)
    return ""


def _hex(ids: list[bytes]) -> list[str]:
    return list(map(bytes.hex, ids))


# -- the view ---------------------------------------------------------------------------------

class SpanColumns:
    """Parallel per-span lists of one batch; see the module docstring for the full API."""

    def __init__(self, message: ExportTraceServiceRequest, wire: bytes | None = None,
                 captured: frozenset[str] = frozenset()) -> None:
        self.message = message
        self.wire = wire
        # Keys whose typed columns the attribute pass fills (module docstring: attribute capture).
        self.captured = captured
        self.trace_id: list[bytes] = []
        self.span_id: list[bytes] = []
        self.parent_span_id: list[bytes] = []
        self.trace_state: list[str] = []
        self.name: list[str] = []
        self.kind: list[int] = []
        self.start_ns: list[int] = []
        self.end_ns: list[int] = []
        self.duration_ns: list[int] = []
        self.status_code: list[int] = []
        self.status_message: list[str] = []
        self.service: list[str] = []
        self.resource_index: list[int] = []
        self.scope_name: list[str] = []
        self.scope_version: list[str] = []
        self.resources: list[Any] = []
        self.resource_services: list[str] = []
        # Resource r's spans are [resource_starts[r], resource_starts[r + 1]) (one more entry than resources).
        self.resource_starts: list[int] = []
        self._typed: dict[str, list[Value]] = {}
        self._rows: dict[str, dict[int, Value]] = {}  # attribute_rows of keys the pass did not capture

    @classmethod
    def build(cls, message: ExportTraceServiceRequest, wire: bytes | None = None,
              captured: frozenset[str] = frozenset()) -> "SpanColumns":
        """One pass over `message`; per-resource and per-scope values are read once.

        `wire`, when given, must be `message`'s encoding (Traces passes its unchanged bytes): a
        key whose bytes do not occur in it is known absent without scanning any span.
        `captured`: the keys the attribute pass is to fill (`capture` adds more until it runs).
        """
        cols = cls(message, wire, captured)
        for index, rs in enumerate(message.resource_spans):
            resource = rs.resource
            service = _service_name(resource.attributes)
            cols.resources.append(resource)
            cols.resource_services.append(service)
            cols.resource_starts.append(len(cols.trace_id))
            for scope_spans in rs.scope_spans:
                count = cols._add_spans(scope_spans.spans)
                if count:
                    scope = scope_spans.scope
                    cols.service.extend(repeat(service, count))
                    cols.resource_index.extend(repeat(index, count))
                    cols.scope_name.extend(repeat(scope.name, count))
                    cols.scope_version.extend(repeat(scope.version, count))
        cols.resource_starts.append(len(cols.trace_id))
        cols.duration_ns = list(map(sub, cols.end_ns, cols.start_ns))
        return cols

    def _add_spans(self, spans: Any) -> int:
        """Append the eager columns of one scope's spans; returns how many there were."""
        trace_id, span_id, parent = self.trace_id.append, self.span_id.append, self.parent_span_id.append
        trace_state, name, kind = self.trace_state.append, self.name.append, self.kind.append
        start, end = self.start_ns.append, self.end_ns.append
        code, message = self.status_code.append, self.status_message.append
        count = 0
        for span in spans:
            trace_id(span.trace_id)
            span_id(span.span_id)
            parent(span.parent_span_id)
            trace_state(span.trace_state)
            name(span.name)
            kind(span.kind)
            start(span.start_time_unix_nano)
            end(span.end_time_unix_nano)
            status = span.status
            code(status.code)
            message(status.message)
            count += 1
        return count

    def __len__(self) -> int:
        return len(self.trace_id)

    # -- lazy columns ---------------------------------------------------------------------------
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
    def resource_attribute_maps(self) -> list[dict[str, str]]:
        """One `{key: text}` per resource (index with `resource_index`)."""
        return [attribute_map(resource.attributes) for resource in self.resources]

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
        return attribute_pass(self.spans, self.captured)

    def capture(self, keys: frozenset[str]) -> None:
        """Have the attribute pass fill the typed columns of `keys` too, if it has not run yet
        (once it has, a key it did not capture is scanned when read: same values)."""
        if not keys <= self.captured and "_pass" not in self.__dict__:
            self.captured = self.captured | keys

    @lazy
    def events(self) -> EventColumns:
        return EventColumns(*_nested(self.spans, "events", attrgetter("time_unix_nano"), attrgetter("name"),
                                     _attributes))

    @lazy
    def links(self) -> LinkColumns:
        return LinkColumns(*_nested(self.spans, "links", _hex_of("trace_id"), _hex_of("span_id"),
                                    attrgetter("trace_state"), _attributes))

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
        n = len(self)
        found: dict[str, list[Value]] = {key: [None] * n for key in keys}
        wire = self.wire
        # A key whose encoding occurs nowhere in the batch is absent from every span: no scan for it.
        scan = found if wire is None else {key: found[key] for key in keys if key_field(key) in wire}
        for key in keys:
            if key not in scan:
                found[key] = self._absent
        if not scan:
            return found
        seen: set[str] = set()
        for i, span in enumerate(self.spans):
            for kv in span.attributes:
                column = scan.get(kv.key)
                if column is not None:
                    value = kv.value
                    column[i] = TYPED_OF[value.WhichOneof("value")](value)
                    seen.add(kv.key)
        for key in scan:
            if key not in seen:
                found[key] = self._absent
        return found

    def resource_attribute(self, key: str) -> list[Value]:
        """Per span, the typed value of resource attribute `key` (computed per resource)."""
        per_resource: list[Value] = [None] * len(self.resources)
        for index, resource in enumerate(self.resources):
            for kv in resource.attributes:
                if kv.key == key:
                    per_resource[index] = any_value_typed(kv.value)
        return list(map(per_resource.__getitem__, self.resource_index))
