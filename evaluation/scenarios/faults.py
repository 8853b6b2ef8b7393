"""Fault injection: `FaultyFleet` is the healthy `SimFleet` with ONE fault on known subjects.

A `Fault` names what breaks (`kind`), where (service, and tool or dependency where that
applies) and when (`start`, `duration`, in seconds from the scenario's start; `duration`
None: until the end). `FaultyFleet` overrides the hooks of `SimFleet` that the fault
touches, only for its subject and only while it is active, so the rest of the fleet behaves
as in a healthy scenario. What each kind does:

- `error_spike`: 15 % of the service's spans fail (on top of the background failures).
- `slow_tool`: one agent's tool takes 3 × as long (its execute_tool span and HTTP call).
- `memory_leak`: process.memory.usage of the service's baseline process (not its canary)
  grows 120 MB/hour; at the end the process restarts (same instance id) and memory is back
  to its usual level.
- `cpu_loop`: the service's process.cpu.utilization reads 0.96-0.98 (for 2 minutes).
- `tool_loop`: the first invocation after the start ends with the same tool called with the
  same arguments 8 times in a row (one session); the fault ends with that invocation.
- `dependency_timeout`: every HTTP call to the dependency times out (client timeout, 5 s),
  from every caller.
- `context_overflow`: every chat call of the service sends 93-97 % of its model's context
  window (genai-prices' `context_window`).
- `deadlock`: three invocations of the service (at the start, +40 s, +80 s) wait 15 s on
  something no span covers, after their first LLM call.
- `cost_overrun`: a bad deploy switches the service to its expensive model with 10k-token
  prompts while a retry storm multiplies its traffic by 5 (until the end).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from evaluation.scenarios.profiles import ServiceProfile, Tool
from evaluation.scenarios.simfleet import Instance, Invocation, SimFleet

ERROR_SPIKE_RATE = 0.15
SLOW_FACTOR = 3.0
LEAK_BYTES_PER_HOUR = 120e6
LOOP_CALLS = 8
LOOP_ARGUMENTS = '{"query": "status of order 4411"}'
DEADLOCK_OFFSETS = (0.0, 40.0, 80.0)
BLOCKED_SECONDS = 15.0
RUNAWAY_RATE_FACTOR = 5.0
RUNAWAY_INPUT_TOKENS = 10_000


@dataclass(frozen=True)
class Fault:
    kind: str
    service: str
    start: float  # seconds after the scenario's start
    duration: float | None = None  # None: until the scenario ends
    tool: str | None = None
    dependency: str | None = None

    def active(self, elapsed: float) -> bool:
        return self.start <= elapsed and (self.duration is None or elapsed < self.start + self.duration)


@dataclass
class FaultyFleet(SimFleet):
    fault: Fault | None = None
    # What the fleet learns while injecting, for the labels: the looping session, and when the
    # faults that end with an invocation (tool loop, deadlock) really ended.
    injected_session: str | None = None
    injected_end: float | None = None
    _deadlocks_left: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fault is not None and self.fault.kind == "deadlock":
            self._deadlocks_left = [self.fault.start + offset for offset in DEADLOCK_OFFSETS]

    def _on(self, kind: str, service: str, t: float) -> bool:
        fault = self.fault
        return (fault is not None and fault.kind == kind and fault.service == service
                and fault.active(t - self.start_s))

    # -- span behaviour --------------------------------------------------------------------------
    def span_fails(self, profile: ServiceProfile, t: float) -> bool:
        if self._on("error_spike", profile.service, t) and self.rng.random() < ERROR_SPIKE_RATE:
            return True
        return super().span_fails(profile, t)

    def tool_seconds(self, profile: ServiceProfile, tool: Tool, t: float) -> float:
        seconds = super().tool_seconds(profile, tool, t)
        if self._on("slow_tool", profile.service, t) and self.fault is not None and tool.name == self.fault.tool:
            seconds *= SLOW_FACTOR
        return seconds

    def http_outcome(self, profile: ServiceProfile, tool: Tool, t: float) -> str:
        outcome = super().http_outcome(profile, tool, t)
        fault = self.fault
        if (fault is not None and fault.kind == "dependency_timeout" and tool.dependency == fault.dependency
                and fault.active(t - self.start_s)):
            return "timeout"  # every caller of the dependency
        return outcome

    def input_tokens(self, profile: ServiceProfile, t: float) -> int:
        tokens = super().input_tokens(profile, t)
        if self._on("context_overflow", profile.service, t) and profile.context_window:
            return int(profile.context_window * self.rng.uniform(0.93, 0.97))
        if self._on("cost_overrun", profile.service, t):
            return int(self.rng.lognormvariate(math.log(RUNAWAY_INPUT_TOKENS), 0.3))
        return tokens

    def model(self, profile: ServiceProfile, t: float) -> tuple[str, str]:
        if self._on("cost_overrun", profile.service, t) and profile.expensive_model:
            return profile.expensive_model
        return super().model(profile, t)

    def rate(self, profile: ServiceProfile, t: float) -> float:
        factor = RUNAWAY_RATE_FACTOR if self._on("cost_overrun", profile.service, t) else 1.0
        return super().rate(profile, t) * factor

    def blocked_seconds(self, profile: ServiceProfile, t: float) -> float:
        fault = self.fault
        if (fault is None or fault.kind != "deadlock" or fault.service != profile.service
                or not self._deadlocks_left or t - self.start_s < self._deadlocks_left[0]):
            return super().blocked_seconds(profile, t)
        self._deadlocks_left.pop(0)
        self.injected_end = t - self.start_s + BLOCKED_SECONDS
        return BLOCKED_SECONDS

    def loop_calls(self, invocation: Invocation, parent: bytes, cursor: float) -> float:
        fault = self.fault
        if (fault is None or fault.kind != "tool_loop" or self.injected_session is not None
                or not self._on("tool_loop", invocation.profile.service, cursor)):
            return super().loop_calls(invocation, parent, cursor)
        tool = next(t for t in invocation.profile.tools if t.name == fault.tool)
        for _ in range(LOOP_CALLS):
            cursor = self.tool_call(invocation, parent, cursor, tool, LOOP_ARGUMENTS, retry=False)
        # genai gives a trace without a conversation id its trace id as the session.
        self.injected_session = invocation.session.conversation or invocation.trace_id.hex()
        self.injected_end = cursor - self.start_s
        return cursor

    # -- process metrics -------------------------------------------------------------------------
    def memory_bytes(self, instance: Instance, t: float) -> float:
        usual = super().memory_bytes(instance, t)
        fault, elapsed = self.fault, t - self.start_s
        if self._on("memory_leak", instance.profile.service, t) and fault is not None and not instance.canary:
            return usual + LEAK_BYTES_PER_HOUR * (elapsed - fault.start) / 3600
        return usual  # before the leak, and after the restart that ends it

    def cpu_ratio(self, instance: Instance, t: float) -> float:
        usual = super().cpu_ratio(instance, t)
        if self._on("cpu_loop", instance.profile.service, t):
            return self.rng.uniform(0.96, 0.98)
        return usual
