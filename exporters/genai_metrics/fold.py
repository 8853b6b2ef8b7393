"""One batch's columns → the label sets and values of the GenAI metrics (no per-span dicts).

Reads the canonical keys the `genai` processor writes (the OpenTelemetry GenAI semantic
conventions, plus our `gen_ai.usage.cost` in USD) from the batch's shared `SpanColumns`:
`attribute_rows(key)` hands over only the spans that have a key, so a batch without GenAI
spans costs a few dict lookups. Per span, the work is C-level passes (`map`, `itemgetter`)
over label columns of raw values; the store numbers them, and label text is made once per
series when Prometheus scrapes, never per span.

- duration: every span with `gen_ai.operation.name`, its end − start in seconds;
- token usage: every span with `gen_ai.usage.input_tokens` / `output_tokens` (a non-negative
  number), one observation per token type;
- cost: every span with a non-negative numeric `gen_ai.usage.cost`, by service, agent
  (`gen_ai.agent.name`) and model (response model, else request model).
`error.type` is the span's attribute, else `_OTHER` for a span whose status is Error (the
semantic conventions' fallback), else empty. An attribute a span lacks is an empty label,
which Prometheus treats as no label.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, itemgetter, truediv
from typing import Any, Sequence

import orjson

from pipeline.pdata.anyvalue import format_double
from pipeline.pdata.spans import SpanColumns

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
ERROR_TYPE = "error.type"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
COST = "gen_ai.usage.cost"
AGENT_NAME = "gen_ai.agent.name"
SERVICE_NAME = "service.name"
KEYS = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL, ERROR_TYPE, INPUT_TOKENS, OUTPUT_TOKENS, COST,
        AGENT_NAME)
STATUS_ERROR = 2
OTHER_ERROR = "_OTHER"



@dataclass(frozen=True)
class Dimension:
    """An extra label, as spanmetrics' `dimensions`: a span attribute, else the resource's, else
    `default` (empty when unset)."""

    name: str
    default: str | None = None


@dataclass
class Observations:
    """One batch's observations of one metric, as columns: `labels[j][i]` is label j's raw value
    (None: absent) for observation i, `values[i]` its value. Label text is made once per series,
    at scrape time, never per span."""

    labels: list[Sequence[Any]]
    values: Sequence[float]


@dataclass
class Folded:
    durations: list[Observations] = field(default_factory=list)
    tokens: list[Observations] = field(default_factory=list)
    costs: list[Observations] = field(default_factory=list)


def text(value: Any) -> str:
    """A label value as otelcol's AsString writes it: strings as they are, bools `true`/`false`,
    numbers in decimal, bytes base64, arrays and maps compact JSON; absent as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def take(column: Sequence[Any], indices: list[int]) -> list[Any]:
    """`column`'s values at `indices`, in one C call."""
    if len(indices) > 1:
        return list(itemgetter(*indices)(column))
    return [column[i] for i in indices]


def amounts(rows: dict[int, Any]) -> tuple[list[int], list[Any]]:
    """(span indices, values) of the rows that hold a count or cost: a non-negative int or float
    (a bool or a string is not one). The common case, every value an int or a float, is checked
    by C-level passes; only a batch with an odd value is filtered span by span."""
    values = list(rows.values())
    if set(map(type, values)) <= NUMBERS and min(values) >= 0:
        return list(rows), values
    kept = [(i, v) for i, v in rows.items() if type(v) in NUMBERS and v >= 0]
    return [i for i, _ in kept], [v for _, v in kept]


class Folder:
    """Turns batches into `Folded` observations for a fixed set of extra dimensions."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        self.dimensions = tuple(dimensions)

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        """Span attribute keys to register with the shared attribute pass."""
        return tuple(dict.fromkeys([*KEYS, *(d.name for d in self.dimensions if d.name != SERVICE_NAME)]))

    def fold(self, cols: SpanColumns) -> Folded:
        out = Folded()
        ops, inputs = cols.attribute_rows(OPERATION), cols.attribute_rows(INPUT_TOKENS)
        outputs, costs = cols.attribute_rows(OUTPUT_TOKENS), cols.attribute_rows(COST)
        if ops:
            out.durations.append(self._durations(cols, ops))
        for rows, token_type in ((inputs, "input"), (outputs, "output")):
            if rows:
                out.tokens.append(self._tokens(cols, rows, token_type))
        if costs:
            out.costs.append(self._costs(cols, costs))
        return out

    def _durations(self, cols: SpanColumns, ops: dict[int, Any]) -> Observations:
        indices = list(ops)
        labels: list[Sequence[Any]] = [
            list(ops.values()), *(cols.values_at(k, indices) for k in (PROVIDER, REQUEST_MODEL, RESPONSE_MODEL)),
            error_types(cols, indices), *self._extras(cols, indices)]
        return Observations(labels, list(map(truediv, take(cols.duration_ns, indices), repeat(1e9))))

    def _tokens(self, cols: SpanColumns, rows: dict[int, Any], token_type: str) -> Observations:
        indices, counted = amounts(rows)
        labels: list[Sequence[Any]] = [*(cols.values_at(k, indices) for k in MODEL_KEYS), [token_type] * len(indices),
                  *self._extras(cols, indices)]
        return Observations(labels, counted)

    def _costs(self, cols: SpanColumns, rows: dict[int, Any]) -> Observations:
        indices, usd = amounts(rows)
        models = [response or request for response, request in
                  zip(cols.values_at(RESPONSE_MODEL, indices), cols.values_at(REQUEST_MODEL, indices))]
        return Observations([take(cols.service, indices), cols.values_at(AGENT_NAME, indices), models], usd)

    def _extras(self, cols: SpanColumns, indices: list[int]) -> list[list[Any]]:
        return [dimension_values(cols, d, indices) for d in self.dimensions]


MODEL_KEYS = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL)
NUMBERS = frozenset({int, float})


def error_types(cols: SpanColumns, indices: list[int]) -> list[Any]:
    """`error.type` per span, `_OTHER` for an Error-status span without one. Errors are rare, so
    only the Error spans (found by a C scan) are visited."""
    values = cols.values_at(ERROR_TYPE, indices)
    status = take(cols.status_code, indices)
    if STATUS_ERROR in status:
        for j in compress(range(len(status)), map(eq, status, repeat(STATUS_ERROR))):
            if values[j] is None:
                values[j] = OTHER_ERROR
    return values


def dimension_values(cols: SpanColumns, dimension: Dimension, indices: list[int]) -> list[Any]:
    """Span attribute, else resource attribute (text), else the default, else None."""
    if dimension.name == SERVICE_NAME:
        return take(cols.service, indices)
    values = cols.values_at(dimension.name, indices)
    if None not in values:
        return values
    maps = cols.resource_attribute_maps
    if any(dimension.name in m for m in maps):
        resource_of = cols.resource_index
        values = [maps[resource_of[i]].get(dimension.name) if v is None else v for v, i in zip(values, indices)]
    if dimension.default is not None:
        values = [dimension.default if v is None else v for v in values]
    return values
