"""What the suite found, per detector: false positives broken down from the data, episodes
that flapped during one fault, and why (the mechanism, read from the detector's code).

The counts are computed from this run's outcomes; the explanations are fixed text about how
each detector behaves at the product defaults (read from its code and confirmed on the
events when the suite was written), shown only when the data shows the symptom.
"""
from __future__ import annotations

import re
from collections import Counter

from evaluation.scenarios.runner import Outcome
from evaluation.scenarios.score import SuiteScore

EARLY_S = 120.0  # "just after the daemon started": the windows hold less than they claim
SMALL_WINDOW = 150  # spans in the error-rate window below which ~1 % background noise is coarse

WHY_FP = {
    "error_rate_spike": (
        "The detector fires when the one-sided 95 % Wilson lower bound of a service's error rate exceeds 5 % "
        "(the rate alone fired in 26 of 50 scenarios when the suite was written: one failed tool call is two "
        "error spans, so a service with 50-150 spans in its window crossed 5 % with two or three unrelated "
        "failures). What remains is billing-agent on the noisy fleet, where clustered timeouts put 10-12 % of "
        "a small window in error: a real, short burst rather than noise; counting failed invocations (root or "
        "SERVER spans) instead of spans would judge it more like a user would."),
    "performance_degradation": (
        "When the suite was written this was chance: the geometric mean of a 60-second window of at least `min_samples` (10) calls of a "
        "lognormal tool (sigma 0.6-0.8) landed just over 2x a baseline learned from the stream."),
    "dependency_failure": (
        "When the suite was written this was chance: four independent single timeouts (0.2 % of calls) to one dependency within 60 s, at about "
        "one call a second; `max_timeouts` 3 fires on the fourth."),
}
WHY_FLAP = {
    "performance_degradation": (
        "A degraded subject stays judged while its 60-second window holds any call (it used to drop out "
        "under `min_samples` and resolve although the tool was still slow); what flaps now is a subject "
        "whose calls stop for longer than `resolve_after`."),
    "context_overflow": (
        "By design the subject is reported only while overflowing calls arrive: at billing-agent's traffic "
        "(a call every 20-60 s) a gap longer than `resolve_after` (60 s) resolves the episode and the next "
        "call opens another."),
    "memory_leak": "One episode per service version: a leak seen by two processes of different versions.",
}


def _false_positives(outcomes: list[Outcome], suite: SuiteScore) -> list[str]:
    lines = []
    for row in suite.rows.values():
        events = [(o, e) for o in outcomes for e in o.false_positives if e.row == row.row]
        if not events:
            continue
        subjects = Counter(e.subject_key for _, e in events)
        line = (f"- **{row.row}**: false positives in {row.fp_scenarios} of {suite.scenarios} scenarios "
                f"({suite.fp_rate(row):.1%}; {len(events)} event{'s' * (len(events) != 1)}, by subject: "
                + ", ".join(f"`{s}` {n}" for s, n in subjects.most_common()) + ").")
        if row.row == "error_rate_spike":
            early = sum(e.at < EARLY_S for _, e in events)
            sizes = [int(m.group(1)) for _, e in events if (m := re.search(r"of (\d+) spans", e.message))]
            small = sum(size < SMALL_WINDOW for size in sizes)
            line += (f" {early} of them in the first {EARLY_S:.0f} s after the start; {small} with fewer than "
                     f"{SMALL_WINDOW} spans in the window; observed rates "
                     f"{min(e.observed for _, e in events):.1%}-{max(e.observed for _, e in events):.1%}.")
        if row.row in WHY_FP:
            line += " " + WHY_FP[row.row]
        lines.append(line)
    return lines


def _flaps(outcomes: list[Outcome], suite: SuiteScore) -> list[str]:
    lines = []
    for row in suite.rows.values():
        flapped = [o for o in outcomes if o.label is not None and o.label.row == row.row
                   and len({e.episode for e in o.detections}) > 1]
        if not flapped or row.row not in WHY_FLAP:
            continue
        names = ", ".join(o.scenario.name for o in flapped)
        lines.append(f"- **{row.row}**: {len(flapped)} fault(s) raised more than one episode ({names}). "
                     + WHY_FLAP[row.row])
    return lines


def _misses(outcomes: list[Outcome]) -> list[str]:
    missed = [o for o in outcomes if o.label is not None and o.latency is None]
    return [f"- **{o.label.row}** missed `{o.scenario.name}` ({o.scenario.fleet} fleet): nothing matching "
            f"{' or '.join(str(e) for e in o.label.expect)} fired." for o in missed if o.label is not None]


def _healthy(outcomes: list[Outcome]) -> str:
    """The negative control on its own: healthy-only scenarios and what (if anything) they raised."""
    healthy = [o for o in outcomes if o.label is None]
    raised = [f"{o.scenario.name} ({o.scenario.fleet}: " + ", ".join(sorted({e.row for e in o.false_positives})) + ")"
              for o in healthy if o.false_positives]
    return (f"- Healthy-only scenarios: {len(raised)} of {len(healthy)} raised a firing event"
            + (f": {'; '.join(raised)}." if raised else "."))


def findings(outcomes: list[Outcome], suite: SuiteScore) -> str:
    lines = _misses(outcomes) + _false_positives(outcomes, suite) + _flaps(outcomes, suite)
    order = {name: i for i, name in enumerate(suite.rows)}
    lines.sort(key=lambda line: order.get(line.split("**")[1], len(order)))  # one detector's lines together
    return "\n".join([_healthy(outcomes), *lines])
