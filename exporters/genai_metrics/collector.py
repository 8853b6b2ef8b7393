"""The Prometheus side of `genai_metrics`: its series, written into the daemon's own registry.

One collector is registered in `pipeline.telemetry.metrics.REGISTRY` at import and serves the
stores of the running exporter (`claim`, `start`, `stop`). Names follow the OpenTelemetry →
Prometheus conventions: dots become underscores, a unit in braces (`{token}`) is dropped,
seconds are suffixed `_seconds`, counters `_total`.

One instance per process: a second `genai_metrics` exporter with another id is refused at
build time while one runs (two would write the same series twice). A reload that rebuilds the
exporter under the same id hands its stores over, so counters and histograms carry on without
a reset; renaming the exporter's id in a reload is refused for the same reason (restart instead).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.genai_metrics.fold import text
from exporters.genai_metrics.store import HistogramPoint, SeriesStore, cumulative
from pipeline.telemetry.metrics import REGISTRY

TOKEN_USAGE = "gen_ai_client_token_usage"
DURATION = "gen_ai_client_operation_duration_seconds"
COST = "agentdbg_genai_cost_usd"
OVERFLOW_LABEL = "otel_metric_overflow"
MODEL_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")
COST_LABELS = ("service", "agent", "model")
HELP = {
    TOKEN_USAGE: "Tokens used per GenAI operation, by token type (input, output), from the spans "
                 "(OpenTelemetry GenAI metric gen_ai.client.token.usage, unit {token}).",
    DURATION: "Duration of GenAI operations in seconds, from the spans (OpenTelemetry GenAI metric "
              "gen_ai.client.operation.duration).",
    COST: "Spend in USD from the spans' gen_ai.usage.cost, by service, agent and model.",
}


@dataclass
class Stores:
    """The three metrics' series of one exporter."""

    tokens: SeriesStore
    durations: SeriesStore
    costs: SeriesStore

    def by_name(self) -> dict[str, SeriesStore]:
        return {TOKEN_USAGE: self.tokens, DURATION: self.durations, COST: self.costs}


def label_name(attribute: str) -> str:
    """An attribute key as a Prometheus label: every character outside [a-zA-Z0-9_] → `_`."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in attribute)


class GenAICollector(Collector):
    def __init__(self) -> None:
        self.kept: dict[str, Stores] = {}    # by exporter id, for the process's life (reloads)
        self.live: dict[int, str] = {}       # started instances (id(component)) → exporter id
        self.lock = threading.Lock()

    def claim(self, owner: str, stores: Stores) -> Stores:
        """The stores exporter `owner` is to use: those it had before a reload when their labels
        and buckets match (the series continue, with the new limits), else `stores`. Raises
        ValueError when another genai_metrics exporter is running."""
        with self.lock:
            others = set(self.live.values()) - {owner}
            if others:
                raise ValueError(f"exporters::{owner}: only one genai_metrics exporter per process "
                                 f"({min(others)} is running); list that one in every traces pipeline")
            kept = self.kept.get(owner)
            if kept is not None and same_shape(kept, stores):
                for old, new in zip(kept.by_name().values(), stores.by_name().values()):
                    old.limit = new.limit
                return kept
            self.kept = {owner: stores}
            return stores

    def start(self, owner: str, holder: object) -> None:
        with self.lock:
            self.live[id(holder)] = owner

    def stop(self, holder: object) -> None:
        with self.lock:
            self.live.pop(id(holder), None)

    def serving(self) -> list[Stores]:
        with self.lock:
            return [self.kept[owner] for owner in set(self.live.values()) if owner in self.kept]

    def collect(self) -> Iterator[Metric]:
        for stores in self.serving():
            yield from self._families(stores)

    def _families(self, stores: Stores) -> Iterator[Metric]:
        for name, store in stores.by_name().items():
            yield histogram_family(name, store) if store.bounds else counter_family(name, store)
        series = GaugeMetricFamily("agentdbg_genai_metrics_series",
                                   "Series each GenAI metric holds (at most aggregation_cardinality_limit, "
                                   "plus the overflow series).", labels=["metric"])
        overflow = CounterMetricFamily("agentdbg_genai_metrics_overflow_spans",
                                       "Span observations folded into a GenAI metric's overflow series "
                                       "(otel_metric_overflow=\"true\") because the metric had reached "
                                       "aggregation_cardinality_limit.", labels=["metric"])
        for name, store in stores.by_name().items():
            series.add_metric([name], store.series_count())
            overflow.add_metric([name], store.overflowed)
        yield series
        yield overflow


def same_shape(old: Stores, new: Stores) -> bool:
    return all(a.label_names == b.label_names and a.bounds == b.bounds
               for a, b in zip(old.by_name().values(), new.by_name().values()))


def histogram_family(name: str, store: SeriesStore) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, HELP[name], labels=list(store.label_names))
    merged: dict[tuple[str, ...], HistogramPoint] = {}
    for key, point in store.snapshot()[0]:
        labels = tuple(map(text, key))
        seen = merged.get(labels)
        if seen is None:
            merged[labels] = point
        else:  # raw values that read the same (1 and "1") are one Prometheus series
            seen.counts = [a + b for a, b in zip(seen.counts, point.counts)]
            seen.total += point.total
            seen.count += point.count
    bounds = [repr(float(b)) for b in store.bounds] + ["+Inf"]
    for labels, point in merged.items():
        family.add_metric(list(labels), list(zip(bounds, cumulative(point.counts))), point.total)
    return family


def counter_family(name: str, store: SeriesStore) -> CounterMetricFamily:
    family = CounterMetricFamily(name, HELP[name], labels=list(store.label_names))
    merged: dict[tuple[str, ...], float] = {}
    for key, value in store.snapshot()[1]:
        labels = tuple(map(text, key))
        merged[labels] = merged.get(labels, 0.0) + value
    for labels, value in merged.items():
        family.add_metric(list(labels), value)
    return family


COLLECTOR = GenAICollector()
REGISTRY.register(COLLECTOR)
