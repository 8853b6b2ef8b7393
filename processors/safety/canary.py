"""Canary analysis from `health_snapshot` events of canary subjects.

A canary (service + version) starts `analysing`. A snapshot over any rollback limit (error
rate > 10 %, p95 > 2 s, memory > 1 GB by default) rolls it back at once; snapshots inside
the success criteria (error rate < 2 %, p95 < 500 ms) for `hold_for` (10 min) promote it.
Each canary is decided once: later snapshots change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.safety.config import CanaryConfig


@dataclass
class CanaryState:
    service: str
    version: str
    phase: str = "analysing"
    healthy_since: float | None = None
    last_metrics: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        return {"phase": self.phase, "service": self.service, "version": self.version,
                "healthy_since": self.healthy_since, "last_metrics": self.last_metrics}


def analyse(state: CanaryState, config: CanaryConfig, metrics: dict[str, Any], now: float) -> tuple[str, str] | None:
    """Return (action, reason) when this snapshot decides the canary."""
    state.last_metrics = metrics
    if state.phase != "analysing" or not metrics.get("spans"):
        return None
    error_rate = float(metrics.get("error_rate") or 0)
    p95 = float(metrics.get("latency_p95_s") or 0)
    memory = float(metrics.get("memory_bytes") or 0)
    limits = config.rollback
    breached = [text for bad, text in (
        (error_rate > limits.error_rate, f"error rate {error_rate:.1%} > {limits.error_rate:.0%}"),
        (p95 > limits.latency, f"p95 {p95:.3f}s > {limits.latency:g}s"),
        (memory > limits.memory, f"memory {memory / 1e9:.2f} GB > {limits.memory / 1e9:g} GB")) if bad]
    if breached:
        state.phase = "rolled_back"
        return "rollback", "; ".join(breached)
    good = config.success
    if error_rate < good.max_error_rate and p95 < good.max_latency:
        state.healthy_since = state.healthy_since if state.healthy_since is not None else now
        if now - state.healthy_since >= good.hold_for:
            state.phase = "promoted"
            return "promote", f"healthy for {good.hold_for:g}s"
    else:
        state.healthy_since = None
    return None
