"""The detector contract and what every detector config shares (severity, overrides)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from connectors.triggers.event import Observation
from pipeline.component import StrictConfig


class Override(StrictConfig):
    """Per-subject threshold: the first override whose `match` is contained in the subject wins."""

    match: dict[str, str | bool]
    threshold: float


class DetectorConfig(StrictConfig):
    enabled: bool = True
    severity: Literal["critical", "warning", "info"] = "warning"
    overrides: list[Override] = Field(default_factory=list)


class Detector:
    kind: ClassVar[str]
    # Span attributes the detector reads; the connector fetches all detectors' keys in one pass.
    attribute_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        self.config = config

    def threshold_for(self, subject: dict[str, Any], default: float) -> float:
        for override in self.config.overrides:
            if all(str(subject.get(k)).lower() == str(v).lower() for k, v in override.match.items()):
                return override.threshold
        return default

    def observe(self, batch: Any) -> None:
        """Hot path: fold one traces batch into partial aggregates. Must be cheap."""

    def observe_metrics(self, batch: Any) -> None:
        """Hot path for OTLP metrics batches (memory, CPU)."""

    def evaluate(self, now: float) -> list[Observation]:
        """Off the hot path: one observation per subject that has data in the window."""
        return []

    def take_state_from(self, previous: "Detector") -> None:
        """Carry windowed state over a reload; the default keeps everything but the config."""
        state = {k: v for k, v in vars(previous).items() if k != "config"}
        vars(self).update(state)
