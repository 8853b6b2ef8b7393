"""Config of the `triggers` connector: shared evaluation settings and one block per detector,
with the product defaults of REFERENCE.md §10 written in the models."""
from __future__ import annotations

from pydantic import Field, PositiveInt

from connectors.triggers.detectors.error_rate import ErrorRateConfig
from connectors.triggers.detectors.latency import LatencyConfig
from pipeline.component import StrictConfig
from pipeline.config.units import Duration


class TriggersConfig(StrictConfig):
    evaluation_interval: Duration = 0.25
    resolve_after: Duration = 60.0
    resolve_ratio: float = Field(0.8, gt=0, le=1)
    max_pending_events: PositiveInt = 10000
    performance_degradation: LatencyConfig = LatencyConfig()
    error_rate_spike: ErrorRateConfig = ErrorRateConfig()
