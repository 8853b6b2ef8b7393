"""What the `otlp` and `otlphttp` exporters need to know per signal: where a request goes and how
its answer reports the items the destination rejected (partial_success)."""
from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from pipeline.component import Signal


@dataclass(frozen=True)
class OtlpSignal:
    grpc_method: str            # the gRPC service's Export method
    http_path: str              # appended to `endpoint` by otlphttp
    endpoint_key: str           # otlphttp's full-URL key for the signal, which wins over `endpoint`
    response_type: type[ExportTraceServiceResponse] | type[ExportLogsServiceResponse]
    rejected_field: str         # partial_success.rejected_<items>
    items: str                  # what the log lines call them

    def rejected(self, reply: ExportTraceServiceResponse | ExportLogsServiceResponse) -> tuple[int, str]:
        """How many items the destination rejected, and its message."""
        partial = reply.partial_success
        return getattr(partial, self.rejected_field), partial.error_message


TRACES = OtlpSignal("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces", "traces_endpoint",
                    ExportTraceServiceResponse, "rejected_spans", "spans")
LOGS = OtlpSignal("/opentelemetry.proto.collector.logs.v1.LogsService/Export", "/v1/logs", "logs_endpoint",
                  ExportLogsServiceResponse, "rejected_log_records", "log records")
SIGNALS = {Signal.TRACES: TRACES, Signal.LOGS: LOGS}


def otlp_signal(signal: Signal | None) -> OtlpSignal:
    """The signal an exporter instance serves (the graph builds one per id and signal); traces by default."""
    return SIGNALS.get(signal or Signal.TRACES, TRACES)
