"""One batch's columns → the label sets and values of the GenAI metrics (no per-span dicts).

Reads the canonical keys the `genai` processor writes (the OpenTelemetry GenAI semantic
conventions, plus our `gen_ai.usage.cost` in USD) from the batch's shared `SpanColumns`:
`attribute_rows(key)` hands over only the spans that have a key, so a batch without GenAI
spans costs a few dict lookups, and the Python loops below run over the GenAI spans alone.

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

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

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

Key = tuple[str, ...]


@dataclass(frozen=True)
class Dimension:
    """An extra label, as spanmetrics' `dimensions`: a span attribute, else the resource's, else
    `default` (empty when unset)."""

    name: str
    default: str | None = None


@dataclass
class Folded:
    durations: dict[Key, list[float]] = field(default_factory=dict)
    tokens: dict[Key, list[float]] = field(default_factory=dict)
    costs: dict[Key, tuple[float, int]] = field(default_factory=dict)


def text(value: Any) -> str:
    """A label value: strings as they are, bools as `true`/`false`, numbers in decimal."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def amount(value: Any) -> float | None:
    """A count or cost: a non-negative int or float (a bool or a string is not one)."""
    if type(value) in (int, float) and value >= 0:
        return float(value)
    return None


class Folder:
    """Turns batches into `Folded` groups for a fixed set of extra dimensions."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        self.dimensions = tuple(dimensions)

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        """Span attribute keys to register with the shared attribute pass."""
        return tuple(dict.fromkeys([*KEYS, *(d.name for d in self.dimensions if d.name != SERVICE_NAME)]))

    def fold(self, cols: Any) -> Folded:
        out = Folded()
        ops, inputs = cols.attribute_rows(OPERATION), cols.attribute_rows(INPUT_TOKENS)
        outputs, costs = cols.attribute_rows(OUTPUT_TOKENS), cols.attribute_rows(COST)
        if not (ops or inputs or outputs or costs):
            return out
        if ops:
            self._durations(cols, list(ops), out.durations)
        for rows, token_type in ((inputs, "input"), (outputs, "output")):
            if rows:
                self._tokens(cols, rows, token_type, out.tokens)
        if costs:
            self._costs(cols, costs, out.costs)
        return out

    def _model_labels(self, cols: Any, indices: list[int]) -> list[Iterable[str]]:
        return [labels(cols, key, indices) for key in (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL)]

    def _extra_labels(self, cols: Any, indices: list[int]) -> list[Iterable[str]]:
        return [dimension_labels(cols, d, indices) for d in self.dimensions]

    def _durations(self, cols: Any, indices: list[int], groups: dict[Key, list[float]]) -> None:
        keys = zip(*self._model_labels(cols, indices), error_labels(cols, indices),
                   *self._extra_labels(cols, indices))
        duration = cols.duration_ns
        for key, i in zip(keys, indices):
            seconds = duration[i] / 1e9
            groups.setdefault(key, []).append(seconds if seconds > 0 else 0.0)

    def _tokens(self, cols: Any, rows: dict[int, Any], token_type: str, groups: dict[Key, list[float]]) -> None:
        counted = {i: n for i, value in rows.items() if (n := amount(value)) is not None}
        indices = list(counted)
        keys = zip(*self._model_labels(cols, indices), [token_type] * len(indices),
                   *self._extra_labels(cols, indices))
        for key, value in zip(keys, counted.values()):
            groups.setdefault(key, []).append(value)

    def _costs(self, cols: Any, rows: dict[int, Any], groups: dict[Key, tuple[float, int]]) -> None:
        priced = {i: usd for i, value in rows.items() if (usd := amount(value)) is not None}
        indices = list(priced)
        services = [cols.service[i] for i in indices]
        models = map(lambda response, request: response or request,
                     labels(cols, RESPONSE_MODEL, indices), labels(cols, REQUEST_MODEL, indices))
        for key, usd in zip(zip(services, labels(cols, AGENT_NAME, indices), models), priced.values()):
            total, spans = groups.get(key, (0.0, 0))
            groups[key] = (total + usd, spans + 1)


def labels(cols: Any, key: str, indices: list[int]) -> list[str]:
    return list(map(text, cols.values_at(key, indices)))


def error_labels(cols: Any, indices: list[int]) -> list[str]:
    status = cols.status_code
    return [value or (OTHER_ERROR if status[i] == STATUS_ERROR else "")
            for value, i in zip(labels(cols, ERROR_TYPE, indices), indices)]


def dimension_labels(cols: Any, dimension: Dimension, indices: list[int]) -> list[str]:
    if dimension.name == SERVICE_NAME:
        values = [cols.service[i] for i in indices]
    else:
        values = labels(cols, dimension.name, indices)
        if not all(values) and indices:
            resource = cols.resource_attribute(dimension.name)
            values = [value or text(resource[i]) for value, i in zip(values, indices)]
    default = dimension.default or ""
    return [value or default for value in values] if default else values
