"""memory_leak: memory growing faster than `growth_per_hour` (50 MB/hour) over `window` (30 min).

What fires: per process (service + `service.instance.id`, and per source metric) the
least-squares slope of its memory readings over `window`, in bytes per hour, once the
series has at least `min_points` readings spanning at least `min_span` (5 min). The window
ends at the series' newest reading (the sender's clock, so clock skew does not empty it); a
series with no reading received for `window` is dropped. A series keeps at most
`max_points` readings (one per `window / max_points` seconds; readings in between are
skipped), and the regression sums are running totals, so evaluation is O(1) per series.

Bounded state: at most `max_subjects` (2,000) series (each at most `max_points` readings,
about 40 KB when full); a new series past that is not followed until one goes stale
(`agentdbg_trigger_state_evictions_total{reason="series_untracked"}`).

Subject: `service` (+ `service_version` when the resource has one). The trigger event
contract (docs/contracts.md#trigger-event-agentdbgtriggerv1) has no instance key, so a
service's observation is its worst instance's series, and the message names that instance
and metric; `observed` is that slope in `bytes_per_hour`. Severity critical.

Where readings come from:
- OTLP metrics (gauges and non-monotonic sums; monotonic counters such as total allocated
  bytes are ignored), names in `metric_names` (exact names or `fnmatch` patterns):
  `process.memory.usage` and `process.memory.physical_usage` (OTel process semconv),
  `process.runtime.*.memory*` (older runtime instrumentations, e.g.
  `process.runtime.cpython.memory`, `process.runtime.jvm.memory.usage`), `jvm.memory.used`,
  `go.memory.used`, `runtime.*.mem*` (e.g. `runtime.go.mem.heap_alloc`),
  `v8js.memory.heap.used`, `dotnet.process.memory.working_set`, `container.memory.usage`,
  `system.memory.usage`. Pattern matches must have a byte unit (`By`, `KiBy`, `MiBy`, ...);
  exact names may also have no unit. The data points of one metric at one timestamp are
  summed (JVM pools, V8 heap spaces), except points whose `state` / `type` /
  `system.memory.state` says they are not used memory (`free`, `cached`, `buffered`,
  `vms`, ...).
- Span attributes and resource attributes in `attribute_keys` (`process.memory.usage`,
  `process.memory.physical_usage`, `process.runtime.memory.rss`; bytes): a span's reading is
  timed at its end, a resource's at the batch's arrival; per batch one reading per process.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import Field, PositiveInt

from connectors.triggers.checkpoint_state import DictPart, Part, examples_part
from connectors.triggers.detectors.base import BoundedConfig, Detector, Severity
from connectors.triggers.detectors.otlp_metrics import (
    NameMatcher,
    Origin,
    byte_scale,
    data_points,
    matching_metrics,
    origin_key,
    point_attributes,
    point_value,
    resource_origin,
)
from connectors.triggers.event import Examples, Observation
from pipeline.config.units import ByteSize, Duration
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

MEMORY_METRICS = [
    "process.memory.usage", "process.memory.physical_usage", "process.runtime.*.memory*",
    "jvm.memory.used", "go.memory.used", "runtime.*.mem*", "v8js.memory.heap.used",
    "dotnet.process.memory.working_set", "container.memory.usage", "system.memory.usage",
]
MEMORY_ATTRIBUTES = ["process.memory.usage", "process.memory.physical_usage", "process.runtime.memory.rss"]
STATE_KEYS = frozenset({"state", "type", "system.memory.state"})
NOT_USED = frozenset({"free", "cached", "buffered", "slab_reclaimable", "slab_unreclaimable", "inactive",
                      "available", "vms", "virtual"})
HOUR = 3600.0


class MemoryLeakConfig(BoundedConfig):
    severity: Severity = "critical"
    max_subjects: PositiveInt = 2000  # series (process × source)
    growth_per_hour: ByteSize = 50_000_000
    window: Duration = 1800.0
    min_points: PositiveInt = 5
    min_span: Duration = 300.0
    max_points: PositiveInt = 360
    metric_names: list[str] = Field(default_factory=lambda: list(MEMORY_METRICS))
    attribute_keys: list[str] = Field(default_factory=lambda: list(MEMORY_ATTRIBUTES))


class Series:
    """Readings (t, bytes) of one process and source, with running least-squares sums
    relative to an origin (t0, v0) that is moved forward once per window."""

    __slots__ = ("points", "seen_at", "t0", "v0", "n", "sx", "sy", "sxx", "sxy")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self.seen_at = 0.0  # daemon time of the last reading (staleness does not trust sender clocks)
        self._reset(0.0, 0.0)

    def _reset(self, t0: float, v0: float) -> None:
        self.t0, self.v0 = t0, v0
        self.n, self.sx, self.sy, self.sxx, self.sxy = 0, 0.0, 0.0, 0.0, 0.0

    def _fold(self, t: float, v: float, sign: int) -> None:
        x, y = t - self.t0, v - self.v0
        self.n += sign
        self.sx += sign * x
        self.sy += sign * y
        self.sxx += sign * x * x
        self.sxy += sign * x * y

    def add(self, t: float, v: float, resolution: float, seen_at: float) -> None:
        """Append a reading; one closer than `resolution` to the last one (or older) is skipped."""
        self.seen_at = seen_at
        if self.points and t < self.points[-1][0] + resolution:
            return
        if not self.points:
            self._reset(t, v)
        self.points.append((t, v))
        self._fold(t, v, 1)

    def expire(self, window: float) -> None:
        """Drop readings more than `window` older than the newest (the sender's clock)."""
        points = self.points
        horizon = points[-1][0] - window if points else 0.0
        while points and points[0][0] < horizon:
            t, v = points.popleft()
            self._fold(t, v, -1)
        if points and points[0][0] - self.t0 > window:
            self._reset(*points[0])  # rebase: keeps the sums small and exact
            for t, v in points:
                self._fold(t, v, 1)

    def dump(self) -> list[Any]:
        return [self.seen_at, [list(point) for point in self.points]]

    @classmethod
    def load(cls, value: list[Any]) -> Series:
        """A series from `dump`: its readings folded again into fresh sums."""
        series = cls()
        series.seen_at = value[0]
        for t, v in value[1]:
            if not series.points:
                series._reset(t, v)
            series.points.append((t, v))
            series._fold(t, v, 1)
        return series

    @property
    def duration(self) -> float:
        return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    def slope(self) -> float:
        """Bytes per second by least squares (0 when undetermined)."""
        denominator = self.n * self.sxx - self.sx * self.sx
        if self.n < 2 or denominator <= 0:
            return 0.0
        return (self.n * self.sxy - self.sx * self.sy) / denominator


SeriesKey = tuple[Origin, str]


class Untracked(Series):
    """Where readings of a series past the bound go: nowhere."""

    def add(self, t: float, v: float, resolution: float, seen_at: float) -> None:
        pass


UNTRACKED = Untracked()


class MemoryLeakDetector(Detector[MemoryLeakConfig]):
    kind = "memory_leak"
    config_derived = ("matcher", "attribute_keys", "resolution")

    def __init__(self, config: MemoryLeakConfig) -> None:
        super().__init__(config)
        self.matcher = NameMatcher(config.metric_names)
        self.attribute_keys = tuple(config.attribute_keys)
        self.resolution = config.window / config.max_points
        self.series: dict[SeriesKey, Series] = {}
        self.examples: dict[SeriesKey, Examples] = {}

    def state_parts(self) -> dict[str, Part]:
        return {"series": DictPart(self.series, Series.dump, Series.load, origin_key),
                "examples": examples_part(self.examples, origin_key)}

    # -- hot path --------------------------------------------------------------------------------
    def observe_metrics(self, batch: Metrics) -> None:
        for origin, metric in matching_metrics(batch.message, self.matcher):
            scale = byte_scale(metric.unit)
            if scale is None or (not metric.unit and metric.name not in self.matcher.exact):
                continue
            if metric.WhichOneof("data") == "sum" and metric.sum.is_monotonic:
                continue
            readings = self._readings(metric, scale)
            series = self._series((origin, metric.name))
            for t_ns in sorted(readings):
                series.add(t_ns / 1e9, readings[t_ns], self.resolution, batch.received_at)

    @staticmethod
    def _readings(metric: Any, scale: float) -> dict[int, float]:
        """Bytes per timestamp: the used-memory points of the metric, summed."""
        readings: dict[int, float] = {}
        for point in data_points(metric):
            if point.attributes and not NOT_USED.isdisjoint(point_attributes(point, STATE_KEYS).values()):
                continue
            t = point.time_unix_nano
            readings[t] = readings.get(t, 0.0) + point_value(point) * scale
        return readings

    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        self._resource_readings(cols, batch.received_at)
        for key in self.attribute_keys:
            rows = cols.attribute_rows(key)  # the spans with a reading, straight from the shared pass
            if rows:
                self._span_readings(cols, key, rows, batch.received_at)

    def _resource_readings(self, cols: SpanColumns, now: float) -> None:
        wanted = self.attribute_keys
        for resource in cols.resources:
            for kv in resource.attributes:
                if kv.key in wanted:
                    value = kv.value.int_value or kv.value.double_value
                    if value > 0:
                        self._series((resource_origin(resource), "resource:" + kv.key)).add(
                            now, float(value), self.resolution, now)

    def _span_readings(self, cols: SpanColumns, key: str, rows: dict[int, Any], now: float) -> None:
        latest: dict[int, int] = {}  # resource index → index of its latest span with a reading
        ends, resource_index = cols.end_ns, cols.resource_index
        for i, value in rows.items():
            if value is None or isinstance(value, (bool, str, bytes, list, dict)):
                continue
            r = resource_index[i]
            j = latest.get(r)
            if j is None or ends[i] > ends[j]:
                latest[r] = i
        for r, i in latest.items():
            series_key = (resource_origin(cols.resources[r]), "span:" + key)
            series = self._series(series_key)
            series.add(ends[i] / 1e9, float(rows[i]), self.resolution, now)
            if series is not UNTRACKED:
                self.examples.setdefault(series_key, Examples()).add(cols.trace_id[i], cols.span_id[i])

    def _series(self, key: SeriesKey) -> Series:
        series = self.series.get(key)
        if series is None:
            if not self.admit(self.series, key, "series_untracked"):
                return UNTRACKED
            self.series[key] = series = Series()
        return series

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        worst: dict[tuple[str, str], tuple[float, SeriesKey, Series]] = {}
        for key, series in list(self.series.items()):
            series.expire(self.config.window)
            if not series.points or now - series.seen_at > self.config.window:
                del self.series[key]
                self.examples.pop(key, None)
                continue
            if series.n < self.config.min_points or series.duration < self.config.min_span:
                continue
            per_hour = series.slope() * HOUR
            subject = (key[0].service, key[0].version)
            if subject not in worst or per_hour > worst[subject][0]:
                worst[subject] = (per_hour, key, series)
        return [self._observation(*found) for found in worst.values()]

    def _observation(self, per_hour: float, key: SeriesKey, series: Series) -> Observation:
        origin, source = key
        subject: dict[str, Any] = {"service": origin.service}
        if origin.version:
            subject["service_version"] = origin.version
        threshold = self.threshold_for(subject, float(self.config.growth_per_hour))
        where = f"instance {origin.instance}" if origin.instance else "its process"
        return Observation(
            self.kind, subject, round(per_hour, 1), threshold, "bytes_per_hour",
            (series.points[0][0], series.points[-1][0]), self.config.severity,
            f"{origin.service}: memory ({source}, {where}) grows {per_hour / 1e6:.1f} MB/hour over "
            f"{series.duration / 60:.1f} min and {series.n} readings (threshold {threshold / 1e6:g} MB/hour)",
            self.examples.get(key, Examples()))

    # -- for the health snapshot -----------------------------------------------------------------
    def latest_bytes(self, service: str, version: str, instances: set[str]) -> float | None:
        """The largest latest reading among the service's processes of that version (or those
        instances); None when there is none."""
        best: float | None = None
        for (origin, _), series in self.series.items():
            if origin.service != service or not series.points:
                continue
            if origin.version == version or (origin.instance and origin.instance in instances):
                value = series.points[-1][1]
                best = value if best is None or value > best else best
        return best
