"""`debug`: write what arrives to the log (otelcol's debug exporter).

`verbosity: basic` logs one summary line per batch; `normal` one line per span (trace id,
span id, name, service); `detailed` adds kind, times, status and attributes. Logs alike: one
line per log record (trace id, span id, severity, body, service) at `normal`; `detailed` adds
times, flags, scope, event name and attributes.
`sampling_initial` / `sampling_thereafter` thin the output per second, as otelcol does.
It never refuses and never blocks: it is for looking, not for keeping.
"""
from __future__ import annotations

import time
from typing import Any, Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import PositiveInt

from pipeline.component import Exporter, Factory, Kind, Settings, Signal, StrictConfig
from pipeline.pdata.anyvalue import any_value_text, attribute_map
from pipeline.pdata.batch import Batch
from pipeline.pdata.logs import Logs, iter_log_records
from pipeline.pdata.traces import Traces


class DebugConfig(StrictConfig):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"
    sampling_initial: PositiveInt = 2
    sampling_thereafter: PositiveInt = 1


class DebugExporter(Exporter[Batch]):
    def __init__(self, settings: Settings, config: DebugConfig) -> None:
        super().__init__(settings)
        self.config = config
        self._second = 0
        self._seen = 0

    def _sampled(self) -> bool:
        now = int(time.monotonic())
        if now != self._second:
            self._second, self._seen = now, 0
        self._seen += 1
        excess = self._seen - self.config.sampling_initial
        return excess <= 0 or excess % self.config.sampling_thereafter == 0

    async def consume(self, batch: Batch) -> None:
        if not self._sampled():
            return
        if isinstance(batch, Logs):
            self._log_logs(batch)
            return
        if not isinstance(batch, Traces):
            self.log.info(type(batch).__name__, extra={"kv": {"items": batch.item_count}})
            return
        message = batch.message
        self.log.info("Traces", extra={"kv": {"resource_spans": len(message.resource_spans),
                                               "spans": batch.item_count}})
        if self.config.verbosity != "basic":
            self._log_spans(message)

    def _log_spans(self, message: ExportTraceServiceRequest) -> None:
        detailed = self.config.verbosity == "detailed"
        for rs in message.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for scope in rs.scope_spans:
                for span in scope.spans:
                    fields: dict[str, Any] = {"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                              "name": span.name, "service": service}
                    if detailed:
                        fields.update(parent_id=span.parent_span_id.hex(), kind=span.kind,
                                      start=span.start_time_unix_nano, end=span.end_time_unix_nano,
                                      status=span.status.code, scope=scope.scope.name,
                                      attributes={a.key: str(a.value).strip() for a in span.attributes})
                    self.log.info("span", extra={"kv": fields})

    def _log_logs(self, batch: Logs) -> None:
        message = batch.message
        self.log.info("Logs", extra={"kv": {"resource_logs": len(message.resource_logs),
                                             "log_records": batch.item_count}})
        if self.config.verbosity == "basic":
            return
        detailed = self.config.verbosity == "detailed"
        for rl, scope, record in iter_log_records(message):
            service = next((a.value.string_value for a in rl.resource.attributes if a.key == "service.name"), "")
            fields: dict[str, Any] = {"trace_id": record.trace_id.hex(), "span_id": record.span_id.hex(),
                                      "severity_text": record.severity_text,
                                      "severity_number": record.severity_number,
                                      "body": any_value_text(record.body), "service": service}
            if detailed:
                fields.update(time=record.time_unix_nano, observed_time=record.observed_time_unix_nano,
                              flags=record.flags, scope=scope.scope.name, event_name=record.event_name,
                              attributes=attribute_map(record.attributes))
            self.log.info("log record", extra={"kv": fields})


factory = Factory("debug", Kind.EXPORTER, DebugConfig, DebugExporter,
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.EVENTS}),
                  description="log what arrives")
