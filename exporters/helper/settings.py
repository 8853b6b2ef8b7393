"""`sending_queue`, `retry_on_failure` and `timeout`, with otelcol's names and defaults."""
from __future__ import annotations

from pydantic import Field, PositiveInt

from pipeline.component import StrictConfig
from pipeline.config.units import Duration


class QueueSettings(StrictConfig):
    enabled: bool = True
    num_consumers: PositiveInt = 10
    queue_size: PositiveInt = 1000
    block_on_overflow: bool = False
    storage: str | None = None  # id of a file_storage extension: the queue survives restarts


class RetrySettings(StrictConfig):
    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0  # 0 = retry forever
    multiplier: float = Field(1.5, ge=1.0)
    randomization_factor: float = Field(0.5, ge=0.0, le=1.0)


class ExporterHelperConfig(StrictConfig):
    """Mixed into every queued exporter's config."""

    sending_queue: QueueSettings = QueueSettings()
    retry_on_failure: RetrySettings = RetrySettings()
    timeout: Duration = 5.0
