"""The `service` section: pipelines, extensions in use and the daemon's own telemetry."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.component import StrictConfig
from pipeline.config.units import Duration


class PipelineConfig(StrictConfig):
    receivers: list[str] = Field(default_factory=list)
    processors: list[str] = Field(default_factory=list)
    exporters: list[str] = Field(default_factory=list)


class LogsConfig(StrictConfig):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    encoding: Literal["console", "json"] = "console"


class MetricsConfig(StrictConfig):
    level: Literal["none", "basic", "normal", "detailed"] = "normal"
    address: str = "127.0.0.1:8888"


class TelemetryConfig(StrictConfig):
    logs: LogsConfig = LogsConfig()
    metrics: MetricsConfig = MetricsConfig()


class ServiceConfig(StrictConfig):
    extensions: list[str] = Field(default_factory=list)
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    telemetry: TelemetryConfig = TelemetryConfig()
    # Our own key (otelcol has none): how long SIGTERM and reload wait for queues to drain.
    shutdown_timeout: Duration = 30.0
