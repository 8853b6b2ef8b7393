"""Config of the `infinite_loop` detector: the tool-call keys, then the `cpu_*` keys."""
from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from connectors.triggers.detectors.base import BoundedConfig, Override
from pipeline.config.units import Duration


class InfiniteLoopConfig(BoundedConfig):
    """The `infinite_loop:` block. `overrides` and `max_subjects` (from the base) serve the
    repeated-calls and the CPU half respectively."""

    # repeated tool calls (tool_calls.py)
    repeat_threshold: PositiveInt = 5
    window: Duration = 600.0
    require_arguments: bool = True
    max_tracked: PositiveInt = 100_000
    # sustained CPU (cpu.py)
    cpu_threshold: float = Field(0.9, gt=0)
    cpu_sustain: Duration = 30.0
    cpu_stale_after: Duration = 120.0
    cpu_utilization_metrics: list[str] = Field(default_factory=lambda: [
        "process.cpu.utilization", "system.cpu.utilization", "process.runtime.*.cpu.utilization"])
    cpu_time_metrics: list[str] = Field(default_factory=lambda: [
        "process.cpu.time", "process.runtime.*.cpu_time", "container.cpu.time"])
    cpu_time_cores: PositiveFloat = 1.0
    cpu_overrides: list[Override] = Field(default_factory=list)

