"""Sliding-window sums kept as running totals, so evaluation costs O(keys), not O(buckets).

Detectors add one partial aggregate per key per batch (counts, sums); buckets older than
the window are subtracted from the totals as they expire.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any, Generic, Hashable, Iterable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)  # a detector's subject key (a tuple of strings, mostly)


class SlidingSums(Generic[K]):
    def __init__(self, window: float, bucket: float = 1.0, width: int = 2) -> None:
        self.window = window
        self.bucket = bucket
        self.width = width
        self.buckets: deque[tuple[float, dict[K, list[float]]]] = deque()
        self.totals: dict[K, list[float]] = {}

    def add(self, now: float, key: K, values: list[float] | tuple[float, ...]) -> None:
        start = now - now % self.bucket
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append((start, {}))
        current = self.buckets[-1][1]
        slot = current.get(key)
        if slot is None:
            current[key] = slot = [0.0] * self.width
        total = self.totals.get(key)
        if total is None:
            self.totals[key] = total = [0.0] * self.width
        for index, value in enumerate(values):
            slot[index] += value
            total[index] += value

    def expire(self, now: float) -> None:
        horizon = now - self.window
        while self.buckets and self.buckets[0][0] + self.bucket <= horizon:
            _, old = self.buckets.popleft()
            for key, values in old.items():
                total = self.totals[key]
                for index, value in enumerate(values):
                    total[index] -= value
                # values[0] is a count (always > 0 when added), so a zero total means no bucket
                # left in the window holds the key.
                if total[0] <= 1e-9:
                    del self.totals[key]

    def forget(self, key: K) -> None:
        """Drop every count of `key` (bounded state: the key was evicted)."""
        self.totals.pop(key, None)
        for _, bucket in self.buckets:
            bucket.pop(key, None)

    def export(self) -> dict[K, list[list[Any]]]:
        """Per key, its buckets as `[start, values]` (a checkpoint's `Part`)."""
        out: dict[K, list[list[Any]]] = {}
        for start, bucket in self.buckets:
            for key, values in bucket.items():
                out.setdefault(key, []).append([start, list(values)])  # a copy: encoded off the loop
        return out

    def load(self, entries: Mapping[K, list[list[Any]]]) -> None:
        """Merge `export`'s buckets back, each key's replacing what the key had."""
        for key in entries:
            self.forget(key)
        by_start = {start: bucket for start, bucket in self.buckets}
        for key, buckets in entries.items():
            total = self.totals.setdefault(key, [0.0] * self.width)
            for start, values in buckets:
                by_start.setdefault(float(start), {})[key] = [float(v) for v in values]
                for index, value in enumerate(values):
                    total[index] += value
        self.buckets = deque(sorted(by_start.items(), key=lambda item: item[0]))

    def span(self, now: float) -> tuple[float, float]:
        """The time range the totals cover."""
        start = self.buckets[0][0] if self.buckets else now
        return start, now


class SlidingCounts(Generic[K]):
    """Sliding-window integer counts per key: the lean form of SlidingSums for keys that are
    mostly seen once (every tool call is a key). Adding is two dict updates; buckets older
    than the window are subtracted from the totals as they expire."""

    def __init__(self, window: float, bucket: float = 1.0) -> None:
        self.window = window
        self.bucket = bucket
        # Counters, so a whole batch of keys is counted by one C call (Counter.update).
        self.buckets: deque[tuple[float, Counter[K]]] = deque()
        self.totals: Counter[K] = Counter()
        self._end = float("-inf")

    def _current(self, now: float) -> Counter[K]:
        if now >= self._end or not self.buckets:
            start = now - now % self.bucket
            self._end = start + self.bucket
            self.buckets.append((start, Counter()))
        return self.buckets[-1][1]

    def add(self, now: float, key: K, count: int = 1) -> int:
        """Count `key` at `now`; returns its total in the window."""
        current = self._current(now)
        current[key] = current.get(key, 0) + count
        total = self.totals[key] = self.totals.get(key, 0) + count
        return total

    def add_all(self, now: float, keys: Iterable[K]) -> None:
        """Count every key of `keys` (repeats counted) at `now`."""
        keys = keys if isinstance(keys, (list, tuple)) else list(keys)
        self._current(now).update(keys)
        self.totals.update(keys)

    def expire(self, now: float) -> None:
        horizon = now - self.window
        while self.buckets and self.buckets[0][0] + self.bucket <= horizon:
            self._drop_oldest()

    def shed_oldest(self, keys: int, now: float) -> int:
        """Let go of the oldest buckets, never the one `now` falls in, until at most `keys` keys
        are counted: the window shortens for a while (bounded memory). Returns the keys forgotten."""
        before = len(self.totals)
        while len(self.totals) > keys and self.buckets and self.buckets[0][0] + self.bucket <= now:
            self._drop_oldest()
        return before - len(self.totals)

    def _drop_oldest(self) -> None:
        _, old = self.buckets.popleft()
        totals = self.totals
        for key, count in old.items():
            left = totals[key] - count
            if left > 0:
                totals[key] = left
            else:
                del totals[key]

    def span(self, now: float) -> tuple[float, float]:
        start = self.buckets[0][0] if self.buckets else now
        return start, now
