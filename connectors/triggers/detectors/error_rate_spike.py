"""error_rate_spike: more than 5 % of a service's spans in error over a 5-minute sliding window.

Subject: the service. It fires when the rate is over the threshold *with confidence*: the
one-sided Wilson lower bound of the error rate (at `confidence`, 95 %) must exceed the
threshold, and the window must hold `min_count` spans. A service with 60 spans in the
window and 3 unrelated failures (5 %) does not fire (its bound is 2 %); 15 % errors over
50 spans does (bound 9 %). Without the bound, a low-traffic service with the ~1 % of
background failures every fleet has crossed 5 % in half of the labelled scenarios
(evaluation/scenarios). It clears when the observed rate is back to `resolve_ratio` ×
threshold. The event's `observed` is the rate itself. Examples are the latest error spans.

Bounded state: the window is summed in 60 buckets (5 s each for 5 minutes), and holds at most
`max_subjects` (5,000) services; a new service past that is not counted until one leaves the
window (`agentdbg_trigger_state_evictions_total{reason="subject_untracked"}`). Examples are
kept only for services in the window.
"""
from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

from pydantic import Field, PositiveInt

from connectors.triggers.checkpoint_state import Part, examples_part
from connectors.triggers.columnar import positions, take
from connectors.triggers.detectors.base import BoundedConfig, Detector, Severity
from connectors.triggers.event import MAX_EXAMPLES, Examples, Observation
from connectors.triggers.windows import SlidingSums
from pipeline.config.units import Duration
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

STATUS_ERROR = 2


class ErrorRateSpikeConfig(BoundedConfig):
    threshold: float = 0.05
    window: Duration = 300.0
    min_count: PositiveInt = 50
    confidence: float = Field(0.95, ge=0.5, lt=1.0)  # one-sided, for the Wilson lower bound
    resolve_ratio: float = Field(0.8, gt=0, le=1)
    severity: Severity = "critical"


def wilson_lower_bound(errors: float, total: float, z: float) -> float:
    """The lower end of the Wilson score interval of errors/total (z standard deviations)."""
    if total <= 0:
        return 0.0
    rate, z2 = errors / total, z * z
    centre = rate + z2 / (2 * total)
    spread = z * math.sqrt(rate * (1 - rate) / total + z2 / (4 * total * total))
    return max(0.0, (centre - spread) / (1 + z2 / total))


class ErrorRateSpikeDetector(Detector[ErrorRateSpikeConfig]):
    kind = "error_rate_spike"
    config_derived = ("z",)

    def __init__(self, config: ErrorRateSpikeConfig) -> None:
        super().__init__(config)
        # At most 60 buckets (of at least 1 s): memory per service stays flat however long the window.
        self.sums: SlidingSums[str] = SlidingSums(config.window, bucket=max(config.window / 60, 1.0), width=2)
        self.examples: dict[str, Examples] = {}
        self.z = NormalDist().inv_cdf(config.confidence)

    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        totals: dict[str, int] = {}
        starts = cols.resource_starts  # a resource's spans are contiguous: count per resource, not per span
        for service, lo, hi in zip(cols.resource_services, starts, starts[1:]):
            if hi > lo:
                totals[service] = totals.get(service, 0) + hi - lo
        failed = positions(cols.status_code, STATUS_ERROR)
        errors = Counter(take(cols.service, failed))
        now = batch.received_at
        for service, total in totals.items():
            if self.admit(self.sums.totals, service):
                self.sums.add(now, service, (total, errors.get(service, 0)))
        if failed:
            self._examples(cols, [i for i in failed if cols.service[i] in self.sums.totals])

    def state_parts(self) -> dict[str, Part]:
        return {"sums": self.sums, "examples": examples_part(self.examples)}

    def _examples(self, cols: SpanColumns, failed: list[int]) -> None:
        """The last MAX_EXAMPLES error spans of each service, in order (what Examples keeps)."""
        latest: dict[str, list[int]] = {}
        services = cols.service
        for i in reversed(failed):
            kept = latest.setdefault(services[i], [])
            if len(kept) < MAX_EXAMPLES:
                kept.append(i)
        for service, indices in latest.items():
            examples = self.examples.setdefault(service, Examples())
            for i in reversed(indices):
                examples.add(cols.trace_id[i], cols.span_id[i])

    def evaluate(self, now: float) -> list[Observation]:
        self.sums.expire(now)
        window = self.sums.span(now)
        if len(self.examples) > len(self.sums.totals):
            for service in [s for s in self.examples if s not in self.sums.totals]:
                del self.examples[service]
        out = []
        for service, (total, errors) in self.sums.totals.items():
            if total < self.config.min_count:
                continue
            subject = {"service": service}
            threshold = self.threshold_for(subject, self.config.threshold)
            rate = errors / total
            bound = wilson_lower_bound(errors, total, self.z)
            out.append(Observation(
                self.kind, subject, round(rate, 6), threshold, "ratio", window, self.config.severity,
                f"{service}: {rate:.1%} of {int(total)} spans failed in the last {self.config.window:g}s "
                f"(at least {bound:.1%} at {self.config.confidence:.0%} confidence; threshold {threshold:.1%})",
                self.examples.get(service, Examples()), firing=bound > threshold,
                clear_below=threshold * self.config.resolve_ratio))
        return out
