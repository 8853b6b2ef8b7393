"""`Metrics`: the batch that flows through a metrics pipeline (OTLP ExportMetricsServiceRequest).

Same contract as `Traces` (wire bytes kept while unchanged, lazy parse, wire-level merge);
its item count is the number of data points, as otelcol counts metric items.
"""
from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from pipeline.pdata.batch import OtlpBatch

_POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def count_data_points(message: ExportMetricsServiceRequest) -> int:
    total = 0
    for rm in message.resource_metrics:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


class Metrics(OtlpBatch[ExportMetricsServiceRequest]):
    __slots__ = ()
    request_type = ExportMetricsServiceRequest
    count = staticmethod(count_data_points)
