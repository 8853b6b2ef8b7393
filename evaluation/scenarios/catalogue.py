"""The suite: every fault kind with several seeds, and as many healthy-only scenarios.

Each seed picks the fault's subject from the kind's eligible targets (subjects with enough
traffic for the detector to judge them at all) and its start time 10-12 simulated minutes
in, after the detectors have learned baselines. Seeds 1-3 inject into the standard fleet,
seeds 4-5 into the noisy one, so detection is also measured amid bursts and retries. The
fleet's own random seed comes from the scenario's name (`Scenario.fleet_seed`).
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from evaluation.scenarios.faults import Fault
from evaluation.scenarios.profiles import STANDARD, ServiceProfile, noisy

SEEDS = (1, 2, 3, 4, 5)
NOISY_SEEDS = (4, 5)
HEALTHY_SEEDS = (101, 102, 103, 104, 105)
NOISY_HEALTHY_SEEDS = (104, 105)
DURATION = 1800  # simulated seconds
# A leak is judged over a 30-minute window and clears only once the regression no longer sees
# it: its scenarios run longer so the restart that ends it can be seen to resolve the episode.
LONG_DURATION = 3000

# kind → (eligible targets: (service, tool or dependency or None)), fault duration in seconds
TARGETS: dict[str, tuple[tuple[tuple[str, str | None], ...], float | None]] = {
    "error_spike": ((("research-agent", None), ("sql-agent", None), ("coder-agent", None),
                     ("orchestrator", None), ("support-agent", None)), 360.0),
    "slow_tool": ((("research-agent", "search_web"), ("sql-agent", "run_sql"), ("research-agent", "fetch_url"),
                   ("sql-agent", "get_schema"), ("coder-agent", "read_file")), 360.0),
    "memory_leak": ((("coder-agent", None), ("research-agent", None), ("billing-agent", None),
                     ("orchestrator", None), ("support-agent", None)), 900.0),
    "cpu_loop": ((("research-agent", None), ("sql-agent", None), ("billing-agent", None),
                  ("coder-agent", None), ("orchestrator", None)), 120.0),
    "tool_loop": ((("research-agent", "search_web"), ("coder-agent", "run_tests"), ("sql-agent", "run_sql"),
                   ("support-agent", "search_kb"), ("orchestrator", "lookup_order")), 600.0),
    "dependency_timeout": ((("research-agent", "api.search.example"), ("sql-agent", "postgres"),
                            ("orchestrator", "orders-api"), ("support-agent", "vector-db"),
                            ("research-agent", "web")), 240.0),
    "context_overflow": ((("support-agent", None), ("billing-agent", None)), 180.0),
    "deadlock": ((("coder-agent", None), ("research-agent", None), ("orchestrator", None),
                  ("sql-agent", None), ("support-agent", None)), None),
    "cost_overrun": ((("support-agent", None), ("billing-agent", None)), None),
}
KINDS = tuple(TARGETS)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    fleet: str  # "standard" or "noisy"
    duration: int
    fault: Fault | None

    @property
    def fleet_seed(self) -> int:
        """The fleet's seed: from the scenario's name, so no two scenarios share their traffic
        (a false positive seen in one is not counted again in every scenario of its seed)."""
        return zlib.crc32(self.name.encode())

    def profiles(self) -> tuple[ServiceProfile, ...]:
        return noisy(self.duration) if self.fleet == "noisy" else STANDARD


def fault_for(kind: str, seed: int) -> Fault:
    targets, duration = TARGETS[kind]
    service, target = targets[(seed - 1) % len(targets)]
    start = 600.0 + round(random.Random(f"{kind}/{seed}").uniform(0, 120), 1)
    if kind == "tool_loop":  # the fault is one looping invocation: duration only bounds its search
        return Fault(kind, service, start, duration, tool=target)
    if kind == "dependency_timeout":
        return Fault(kind, service, start, duration, dependency=target)
    return Fault(kind, service, start, duration, tool=target)


def scenarios(kinds: tuple[str, ...] = KINDS, seeds: tuple[int, ...] = SEEDS,
              healthy_seeds: tuple[int, ...] = HEALTHY_SEEDS) -> list[Scenario]:
    out = []
    for kind in kinds:
        for seed in seeds:
            fleet = "noisy" if seed in NOISY_SEEDS else "standard"
            duration = LONG_DURATION if kind == "memory_leak" else DURATION
            out.append(Scenario(f"{kind}/{seed}", seed, fleet, duration, fault_for(kind, seed)))
    for seed in healthy_seeds:
        fleet = "noisy" if seed in NOISY_HEALTHY_SEEDS else "standard"
        out.append(Scenario(f"healthy/{seed}", seed, fleet, DURATION, None))
    return out
