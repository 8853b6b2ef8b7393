"""Config of the `triggers` connector: shared evaluation settings and one block per detector,
with the product defaults of docs/triggers.md#what-fires written in the models."""
from __future__ import annotations

from pydantic import Field, PositiveInt

from connectors.triggers.checkpoint import CheckpointConfig
from connectors.triggers.detectors.context_overflow import ContextOverflowConfig
from connectors.triggers.detectors.cost_budget import CostBudgetConfig
from connectors.triggers.detectors.deadlock import DeadlockConfig
from connectors.triggers.detectors.dependency_failure import DependencyFailureConfig
from connectors.triggers.detectors.error_rate_spike import ErrorRateSpikeConfig
from connectors.triggers.detectors.health_snapshot import HealthSnapshotConfig
from connectors.triggers.detectors.infinite_loop import InfiniteLoopConfig
from connectors.triggers.detectors.memory_leak import MemoryLeakConfig
from connectors.triggers.detectors.performance_degradation import PerformanceDegradationConfig
from connectors.triggers.inflight import InflightConfig
from pipeline.component import StrictConfig
from pipeline.config.units import Duration


class TriggersConfig(StrictConfig):
    evaluation_interval: Duration = 0.25
    resolve_after: Duration = 60.0
    resolve_ratio: float = Field(0.8, gt=0, le=1)
    max_pending_events: PositiveInt = 10000
    # Event time (connectors/triggers/eventtime.py): how late a batch may come, after the latest
    # end time seen, and still be counted in the windows; it delays every event by as much.
    # 5 s because the OpenTelemetry SDKs' batch span processor exports every 5 s by default
    # (OTEL_BSP_SCHEDULE_DELAY): one agent's spans routinely arrive that long after another's.
    allowed_lateness: Duration = 5.0
    max_clock_skew: Duration = 300.0
    max_buffered_spans: PositiveInt = 200_000
    checkpoint: CheckpointConfig | None = None
    performance_degradation: PerformanceDegradationConfig = PerformanceDegradationConfig()
    error_rate_spike: ErrorRateSpikeConfig = ErrorRateSpikeConfig()
    memory_leak: MemoryLeakConfig = MemoryLeakConfig()
    infinite_loop: InfiniteLoopConfig = InfiniteLoopConfig()
    dependency_failure: DependencyFailureConfig = DependencyFailureConfig()
    context_overflow: ContextOverflowConfig = ContextOverflowConfig()
    deadlock: DeadlockConfig = DeadlockConfig()
    cost_budget: CostBudgetConfig = CostBudgetConfig()
    health_snapshot: HealthSnapshotConfig = HealthSnapshotConfig()
    # Spans still open, from partial-span heartbeats (logs pipeline) and logfire pending spans.
    inflight: InflightConfig = InflightConfig()
