"""Prometheus gauges of the safety state: breaker state and tier, throttles, canary phase."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

from pipeline.telemetry.metrics import REGISTRY
from processors.safety.engine import SafetyState

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
CANARY_PHASES = ("analysing", "promoted", "rolled_back")

breaker_state = Gauge("agentdbg_safety_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                      ["breaker"], registry=REGISTRY)
breaker_tier = Gauge("agentdbg_safety_breaker_tier", "Fallback tier of a breaker (0 = primary).",
                     ["breaker"], registry=REGISTRY)
throttled = Gauge("agentdbg_safety_throttled_subjects", "Subjects currently throttled for cost.",
                  registry=REGISTRY)
canary_phase = Gauge("agentdbg_safety_canary_phase", "1 for the phase each canary is in.",
                     ["service", "version", "phase"], registry=REGISTRY)
decisions = Counter("agentdbg_safety_decisions", "Safety decisions taken, by action.", ["action"],
                    registry=REGISTRY)


def publish(state: SafetyState) -> None:
    for name, breaker in state.breakers.items():
        breaker_state.labels(name).set(BREAKER_STATES[breaker.state])
        breaker_tier.labels(name).set(breaker.tier)
    throttled.set(len(state.throttles))
    for canary in state.canaries.values():
        for phase in CANARY_PHASES:
            canary_phase.labels(canary.service, canary.version, phase).set(1 if canary.phase == phase else 0)
rejected_events = Counter("agentdbg_safety_rejected_events",
                          "Documents the safety processor set aside without deciding on them, by reason: "
                          "invalid_document (not a valid document of its schema), not_a_trigger (a valid "
                          "document of another schema), engine_error (deciding on it failed).", ["reason"],
                          registry=REGISTRY)
tick_failures = Counter("agentdbg_safety_tick_failures",
                        "Time-driven transitions (half-open, close, step back) that failed and are tried again "
                        "at the next tick.", registry=REGISTRY)
state_save_failures = Counter("agentdbg_safety_state_save_failures",
                              "Writes of the safety state file that failed (disk full, permissions); the "
                              "state in memory went on.", registry=REGISTRY)
