"""Bounded series state of the `genai_metrics` exporter: histograms and counters by label set.

A `SeriesStore` holds one metric's series, keyed by the tuple of label values. It admits new
label sets until `limit` series exist; after that every new label set folds into the one
overflow series (all labels empty but `otel_metric_overflow="true"`), as otelcol's
spanmetrics connector does with `aggregation_cardinality_limit`: totals stay right, only the
breakdown of the late series is lost, and how much went there is counted
(`overflowed`). Series that exist keep being updated; none is ever evicted, so a counter
never goes backwards while the process runs.

The caller folds whole batches (`add_counts`/`add`) and reads a snapshot (`snapshot`) from
the scrape thread; both take the store's lock, once per batch and once per scrape. Keys are
the raw attribute values; the collector turns them into label text.
"""
from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, mul
from typing import Any, Iterable, Sequence

from exporters.genai_metrics.fold import text

LabelValues = tuple[Any, ...]  # raw attribute values (None: absent), the overflow label last
OPEN = (None,)  # the overflow label of a regular series


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
        """The overflow series: every label absent but the last (`otel_metric_overflow`)."""
        return (None,) * (len(self.label_names) - 1) + ("true",)

    def _admit(self, key: LabelValues, series: dict, observations: int) -> LabelValues:
        """`key` itself when it has (or may get) a series, else the overflow key, counting the
        `observations` (spans) that went there. The overflow series comes on top of the `limit`
        regular ones."""
        if key in series or len(series) < self.limit:
            return key
        self.overflowed += observations
        return self.overflow_key

    def add(self, labels: list[Sequence[Any]], values: Sequence[float]) -> None:
        """Fold one batch of histogram observations: `values[i]` under label values
        `labels[0][i], labels[1][i], ...`.

        `encode` numbers the batch's series; from there on everything is small ints: bucket indices from
        `map(bisect_left, ...)`
        (Prometheus buckets are upper-inclusive, `le`: bisect_left puts a value equal to a bound
        in that bound's bucket) counted per (series, bucket) by `Counter`. Only the sums take a
        Python loop."""
        series, codes = encode(labels)
        size = len(self.bounds) + 1
        cells = Counter(map(add, map(mul, codes, repeat(size)), map(bisect_left, repeat(self.bounds), values)))
        sums, counts = [0.0] * len(series), [0] * len(series)
        for code, value in zip(codes, values):
            sums[code] += value
        for cell, count in cells.items():
            counts[cell // size] += count
        with self.lock:
            histograms = self.histograms
            points = []
            for code, key in enumerate(series):
                admitted = self._admit(key + OPEN, histograms, counts[code])
                point = histograms.get(admitted)
                if point is None:  # stored now, so the next key sees the store's new size
                    point = histograms[admitted] = HistogramPoint([0] * size)
                point.count += counts[code]
                point.total += sums[code]
                points.append(point)
            for cell, count in cells.items():
                points[cell // size].counts[cell % size] += count

    def add_counts(self, labels: list[Sequence[Any]], amounts: Sequence[float]) -> None:
        """Fold one batch of counter increments: `amounts[i]` under label values `labels[.][i]`."""
        series, codes = encode(labels)
        sums, spans = [0.0] * len(series), Counter(codes)
        for code, amount in zip(codes, amounts):
            sums[code] += amount
        with self.lock:
            counters = self.counters
            for code, key in enumerate(series):
                admitted = self._admit(key + OPEN, counters, spans[code])
                counters[admitted] = counters.get(admitted, 0.0) + sums[code]

    def snapshot(self) -> tuple[list[tuple[LabelValues, HistogramPoint]], list[tuple[LabelValues, float]]]:
        """A consistent copy for one scrape (histogram points copied, so later batches do not
        change a scrape being written)."""
        with self.lock:
            histograms = [(key, HistogramPoint(list(p.counts), p.total, p.count))
                          for key, p in self.histograms.items()]
            return histograms, list(self.counters.items())

    def series_count(self) -> int:
        return len(self.histograms) + len(self.counters)


def encode(labels: list[Sequence[Any]]) -> tuple[list[LabelValues], list[int]]:
    """Label columns → (the distinct label tuples, in first-seen order; per observation, the
    position of its tuple among them). One tuple per observation, hashed twice, all in C
    (`zip`, `dict.fromkeys`, `map`): measured here faster than numbering each column apart and
    combining the numbers."""
    keys = list(zip(*labels))
    try:
        index: dict[tuple[Any, ...], int] = dict.fromkeys(keys, 0)
    except TypeError:  # an array or map value: its label text stands for it
        keys = [tuple(map(text, key)) for key in keys]
        index = dict.fromkeys(keys, 0)
    for position, key in enumerate(index):
        index[key] = position
    return list(index), list(map(index.__getitem__, keys))


def cumulative(counts: Iterable[int]) -> list[int]:
    """Non-cumulative bucket counts to Prometheus' cumulative `le` counts."""
    out, running = [], 0
    for count in counts:
        running += count
        out.append(running)
    return out
