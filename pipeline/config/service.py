"""The `service` section: pipelines, extensions in use and the daemon's own telemetry."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from pipeline.component import StrictConfig
from pipeline.config.units import Duration
from pipeline.netaddr import Endpoint


class PipelineConfig(StrictConfig):
    receivers: list[str] = Field(default_factory=list)
    processors: list[str] = Field(default_factory=list)
    exporters: list[str] = Field(default_factory=list)


class LogsConfig(StrictConfig):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    encoding: Literal["console", "json"] = "console"


class MetricsAuthConfig(StrictConfig):
    # An oidc or bearertokenauth extension: scraping /metrics then needs the `viewer` role.
    # Unset (the default), /metrics is open, so a local Prometheus scrapes `make run` as it is.
    authenticator: str = ""


class MetricsConfig(StrictConfig):
    level: Literal["none", "basic", "normal", "detailed"] = "normal"
    address: Endpoint = "127.0.0.1:8888"
    auth: MetricsAuthConfig = MetricsAuthConfig()


class TelemetryConfig(StrictConfig):
    logs: LogsConfig = LogsConfig()
    metrics: MetricsConfig = MetricsConfig()


class GcConfig(StrictConfig):
    """Python's collector, tuned for a pipeline that allocates much and keeps little.

    Python collects the youngest generation every 700 net allocations; a batch of spans
    makes tens of thousands, so the default spends 5-10 % of a busy daemon's CPU scanning
    objects that die young anyway (benchmarks/bench_triggers.py measures it). `freeze`
    moves everything alive once the pipelines have started (modules, config, components)
    out of the collector's reach."""

    threshold: int = Field(50_000, ge=1)
    freeze: bool = True


class ServiceConfig(StrictConfig):
    extensions: list[str] = Field(default_factory=list)
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    telemetry: TelemetryConfig = TelemetryConfig()
    # Our own key (otelcol has none): how long SIGTERM and reload wait for queues to drain.
    shutdown_timeout: Duration = 30.0
    gc: GcConfig = GcConfig()
    # Our own key: worker processes sharing the OTLP ports (pipeline/workers.py says what each
    # gets and what a config with more than one cannot hold).
    workers: PositiveInt = 1
