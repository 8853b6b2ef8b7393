"""error_rate_spike: more than 5 % of a service's spans in error over a 5-minute sliding window.

Subject: the service (and its version). Needs `min_count` spans in the window so a quiet
service with one failure does not fire. Examples are the most recent error spans.
"""
from __future__ import annotations

from pydantic import PositiveInt

from connectors.triggers.detectors.base import Detector, DetectorConfig
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingSums
from pipeline.config.units import Duration

STATUS_ERROR = 2


class ErrorRateConfig(DetectorConfig):
    threshold: float = 0.05
    window: Duration = 300.0
    min_count: PositiveInt = 50
    severity: str = "critical"


class ErrorRateDetector(Detector):
    kind = "error_rate_spike"

    def __init__(self, config: ErrorRateConfig) -> None:
        super().__init__(config)
        self.sums = SlidingSums(config.window, bucket=1.0, width=2)
        self.examples: dict[str, Examples] = {}

    def observe(self, batch) -> None:
        cols = batch.columns
        counts: dict[str, list[int]] = {}
        services, codes = cols.service, cols.status_code
        for service in set(services):
            counts[service] = [0, 0]
        for service in services:
            counts[service][0] += 1
        if STATUS_ERROR in codes:
            for i, code in enumerate(codes):
                if code == STATUS_ERROR:
                    counts[services[i]][1] += 1
                    self.examples.setdefault(services[i], Examples()).add(cols.trace_id[i], cols.span_id[i])
        now = batch.received_at
        for service, (total, errors) in counts.items():
            self.sums.add(now, service, (total, errors))

    def evaluate(self, now: float) -> list[Observation]:
        self.sums.expire(now)
        window = self.sums.span(now)
        out = []
        for service, (total, errors) in self.sums.totals.items():
            if total < self.config.min_count:
                continue
            subject = {"service": service}
            threshold = self.threshold_for(subject, self.config.threshold)
            rate = errors / total
            out.append(Observation(
                self.kind, subject, round(rate, 6), threshold, "ratio", window, self.config.severity,
                f"{service}: {rate:.1%} of {int(total)} spans failed in the last {self.config.window:g}s "
                f"(threshold {threshold:.1%})", self.examples.get(service, Examples())))
        return out
