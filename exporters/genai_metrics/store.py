"""Bounded series state of the `genai_metrics` exporter: histograms and counters by label set.

A `SeriesStore` holds one metric's series, keyed by the tuple of label values. It admits new
label sets until `limit` series exist; after that every new label set folds into the one
overflow series (all labels empty but `otel_metric_overflow="true"`), as otelcol's
spanmetrics connector does with `aggregation_cardinality_limit`: totals stay right, only the
breakdown of the late series is lost, and how much went there is counted
(`overflowed`). Series that exist keep being updated; none is ever evicted, so a counter
never goes backwards while the process runs.

The caller folds whole batches (`add_counts`/`add`) and reads a snapshot (`snapshot`) from
the scrape thread; both take the store's lock, once per batch and once per scrape.
"""
from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable, Sequence

LabelValues = tuple[str, ...]


@dataclass
class HistogramPoint:
    """Non-cumulative bucket counts (one more than the bounds: the +Inf bucket), sum, count."""

    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class SeriesStore:
    """One metric's series; `bounds` set makes it a histogram, else it is a counter."""

    label_names: tuple[str, ...]
    limit: int
    bounds: tuple[float, ...] = ()
    histograms: dict[LabelValues, HistogramPoint] = field(default_factory=dict)
    counters: dict[LabelValues, float] = field(default_factory=dict)
    overflowed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def overflow_key(self) -> LabelValues:
        """The overflow series: every label empty but the last (`otel_metric_overflow`)."""
        return ("",) * (len(self.label_names) - 1) + ("true",)

    def _admit(self, key: LabelValues, series: dict, observations: int) -> LabelValues:
        """`key` itself when it has (or may get) a series, else the overflow key, counting the
        `observations` (spans) that went there. The overflow series comes on top of the `limit`
        regular ones."""
        if key in series or len(series) < self.limit:
            return key
        self.overflowed += observations
        return self.overflow_key

    def add(self, groups: dict[LabelValues, Sequence[float]]) -> None:
        """Fold one batch of histogram observations: `{label values: values}`."""
        bounds, buckets = self.bounds, len(self.bounds) + 1
        with self.lock:
            for key, values in groups.items():
                admitted = self._admit(key + ("",), self.histograms, len(values))
                point = self.histograms.get(admitted)
                if point is None:
                    point = self.histograms[admitted] = HistogramPoint([0] * buckets)
                counts = point.counts
                for value in values:
                    # Prometheus buckets are upper-inclusive (`le`): bisect_left puts a value equal
                    # to a bound in that bound's bucket.
                    counts[bisect_left(bounds, value)] += 1
                point.total += sum(values)
                point.count += len(values)

    def add_counts(self, groups: dict[LabelValues, tuple[float, int]]) -> None:
        """Fold one batch of counter increments: `{label values: (amount, spans)}`."""
        with self.lock:
            counters = self.counters
            for key, (amount, spans) in groups.items():
                admitted = self._admit(key + ("",), counters, spans)
                counters[admitted] = counters.get(admitted, 0.0) + amount

    def snapshot(self) -> tuple[list[tuple[LabelValues, HistogramPoint]], list[tuple[LabelValues, float]]]:
        """A consistent copy for one scrape (histogram points copied, so later batches do not
        change a scrape being written)."""
        with self.lock:
            histograms = [(key, HistogramPoint(list(p.counts), p.total, p.count))
                          for key, p in self.histograms.items()]
            return histograms, list(self.counters.items())

    def series_count(self) -> int:
        return len(self.histograms) + len(self.counters)


def cumulative(counts: Iterable[int]) -> list[int]:
    """Non-cumulative bucket counts to Prometheus' cumulative `le` counts."""
    out, running = [], 0
    for count in counts:
        running += count
        out.append(running)
    return out
