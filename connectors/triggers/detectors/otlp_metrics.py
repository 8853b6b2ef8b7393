"""Reading OTLP metrics batches for the memory and CPU detectors.

What it gives: the metrics of a batch whose names match a list of exact names or
`fnmatch` patterns (decided once per name and cached), with the sender's identity (resource
`service.name` — else `host.name` — `service.instance.id`, `service.version`); the data
points of gauges and sums; a point's value, time and text attributes; and the scale of a
byte unit (`By`, `KiBy`, `MiBy` ...). Nothing here allocates per data point beyond a small
attribute dict, and metrics batches are few compared with spans.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Iterable, Iterator, NamedTuple

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from pipeline.pdata.anyvalue import any_value_text

# Units whose values are bytes, and the factor to bytes (UCUM as OTel writes it, plus the
# spellings some exporters use).
BYTE_UNITS: dict[str, float] = {
    "By": 1, "B": 1, "bytes": 1, "byte": 1,
    "kBy": 1e3, "MBy": 1e6, "GBy": 1e9, "KBy": 1e3,
    "KiBy": 1024, "MiBy": 1024 ** 2, "GiBy": 1024 ** 3,
}
CUMULATIVE, DELTA = 2, 1  # AggregationTemporality


class Origin(NamedTuple):
    """Who sent a metric: one reading series per origin and metric."""

    service: str
    version: str
    instance: str


def origin_key(key: Any) -> tuple[Origin, str]:
    """An (origin, metric name) key as a checkpoint wrote it (plain tuples) made typed again."""
    return Origin(*key[0]), key[1]


def resource_origin(resource: Resource) -> Origin:
    found: dict[str, str] = {}
    for kv in resource.attributes:
        if kv.key in ("service.name", "host.name", "service.version", "service.instance.id"):
            found[kv.key] = any_value_text(kv.value)
    service = found.get("service.name") or found.get("host.name") or "unknown_service"
    return Origin(service, found.get("service.version", ""), found.get("service.instance.id", ""))


class NameMatcher:
    """Exact names and `fnmatch` patterns; each metric name is decided once, then cached."""

    MAX_CACHED = 4096

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact = {p for p in patterns if not any(c in p for c in "*?[")}
        self.patterns = [p for p in patterns if p not in self.exact]
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        hit = self._cache.get(name)
        if hit is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            hit = self._cache[name] = name in self.exact or any(fnmatchcase(name, p) for p in self.patterns)
        return hit


def matching_metrics(message: ExportMetricsServiceRequest, matcher: NameMatcher) -> Iterator[tuple[Origin, Metric]]:
    """(origin, metric) for every gauge or sum metric whose name `matcher` accepts."""
    for rm in message.resource_metrics:
        origin: Origin | None = None
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                if not matcher(metric.name) or metric.WhichOneof("data") not in ("gauge", "sum"):
                    continue
                if origin is None:
                    origin = resource_origin(rm.resource)
                yield origin, metric


def data_points(metric: Metric) -> RepeatedCompositeFieldContainer[NumberDataPoint]:
    return metric.gauge.data_points if metric.WhichOneof("data") == "gauge" else metric.sum.data_points


def point_value(point: NumberDataPoint) -> float:
    return point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)


def point_attributes(point: NumberDataPoint, keys: frozenset[str]) -> dict[str, str]:
    """The point's attributes among `keys`, as text (lower case)."""
    return {kv.key: any_value_text(kv.value).lower() for kv in point.attributes if kv.key in keys}


def byte_scale(unit: str) -> float | None:
    """Factor to bytes for a byte unit (`""` counts as bytes), None for any other unit."""
    if not unit:
        return 1.0
    return BYTE_UNITS.get(unit.strip("{}"))
