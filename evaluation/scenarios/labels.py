"""Ground truth: what an injected fault should make fire, and what it may legitimately also cause.

A `Label` holds, for one scenario's fault: its start and end (seconds after the scenario's
start), the events that count as detecting it (`expect`: any one of them), and its
`consequences` — events of other detectors that the fault physically causes (timeouts make
the calling tool slow and raise its service's error rate; a blocked agent makes its
invocations slow; oversized prompts cost money). Consequences are neither detections nor
false positives; they are counted apart. Every other firing event is a false positive.

Subjects match partially: every key/value of the expectation must be in the event's
subject (`exact`: and nothing else — the CPU loop's subject is the service alone, which
tells it from a tool loop of the same service).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evaluation.scenarios.faults import Fault
from evaluation.scenarios.profiles import ServiceProfile

# Which table row a fault kind is scored in (infinite_loop is two detectors in one kind).
ROW_OF_FAULT = {
    "slow_tool": "performance_degradation",
    "error_spike": "error_rate_spike",
    "memory_leak": "memory_leak",
    "cpu_loop": "infinite_loop (CPU)",
    "tool_loop": "infinite_loop (tool repeats)",
    "dependency_timeout": "dependency_failure",
    "context_overflow": "context_overflow",
    "deadlock": "deadlock",
    "cost_overrun": "cost_budget",
}
ROWS = list(ROW_OF_FAULT.values())


def row_of_event(doc: dict[str, Any]) -> str:
    if doc["kind"] == "infinite_loop":
        return "infinite_loop (tool repeats)" if "tool" in doc["subject"] else "infinite_loop (CPU)"
    return doc["kind"]


@dataclass(frozen=True)
class Expect:
    kind: str
    subject: tuple[tuple[str, str], ...]
    exact: bool = False

    @classmethod
    def of(cls, kind: str, exact: bool = False, **subject: str) -> "Expect":
        return cls(kind, tuple(subject.items()), exact)

    def matches(self, doc: dict[str, Any]) -> bool:
        got = doc["subject"]
        if doc["kind"] != self.kind or any(str(got.get(k)) != v for k, v in self.subject):
            return False
        return not self.exact or set(got) == {k for k, _ in self.subject}

    def __str__(self) -> str:
        return f"{self.kind} {{{', '.join(f'{k}={v}' for k, v in self.subject)}}}"


@dataclass(frozen=True)
class Label:
    fault: Fault
    row: str
    start: float
    end: float | None  # None: the fault lasts to the end of the scenario
    expect: tuple[Expect, ...]
    consequences: tuple[Expect, ...] = ()

    def detects(self, doc: dict[str, Any]) -> bool:
        return any(e.matches(doc) for e in self.expect)

    def explains(self, doc: dict[str, Any]) -> bool:
        return any(e.matches(doc) for e in self.consequences)


def label_for(fault: Fault, profiles: tuple[ServiceProfile, ...], session: str | None,
              injected_end: float | None) -> Label:
    """The ground truth of `fault` in a fleet of `profiles`; `session` and `injected_end` are
    what the fleet recorded while injecting (the looping session, the last blocked call)."""
    profile = next(p for p in profiles if p.service == fault.service)
    s, agent = profile.service, profile.agent
    end = fault.start + fault.duration if fault.duration is not None else None
    slow_root = Expect.of("performance_degradation", service=s)  # its invocations take longer
    expect: tuple[Expect, ...]
    consequences: tuple[Expect, ...] = ()
    if fault.kind == "error_spike":
        expect = (Expect.of("error_rate_spike", service=s),)
    elif fault.kind == "slow_tool":
        expect = (Expect.of("performance_degradation", agent=agent, tool=str(fault.tool)),)
        consequences = (slow_root,)
    elif fault.kind == "memory_leak":  # the baseline process leaks, not the canary
        expect = (Expect.of("memory_leak", service=s, service_version=profile.version),)
    elif fault.kind == "cpu_loop":
        expect = (Expect.of("infinite_loop", exact=True, service=s),)
    elif fault.kind == "tool_loop":
        expect = (Expect.of("infinite_loop", service=s, agent=agent, tool=str(fault.tool), session=str(session)),)
        end = injected_end
    elif fault.kind == "dependency_timeout":
        expect = (Expect.of("dependency_failure", dependency=str(fault.dependency)),)
        consequences = _timeout_consequences(str(fault.dependency), profiles)
    elif fault.kind == "context_overflow":
        expect = (Expect.of("context_overflow", service=s, model=profile.model, agent=agent),)
        consequences = (Expect.of("cost_budget", service=s), Expect.of("cost_budget", agent=agent))
    elif fault.kind == "deadlock":
        blocked_agent = "worker" if profile.workers[1] else agent  # an orchestrator blocks inside a worker
        expect = (Expect.of("deadlock", service=s, agent=blocked_agent),)
        consequences = (slow_root,)
        end = injected_end
    elif fault.kind == "cost_overrun":
        expect = (Expect.of("cost_budget", service=s), Expect.of("cost_budget", agent=agent))
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    return Label(fault, ROW_OF_FAULT[fault.kind], fault.start, end, expect, consequences)


def _timeout_consequences(dependency: str, profiles: tuple[ServiceProfile, ...]) -> tuple[Expect, ...]:
    """Every caller of a timing-out dependency: its tool is slow (the client waits out its
    timeout), its invocations are slow, and its error rate rises."""
    out: list[Expect] = []
    for profile in profiles:
        for tool in profile.tools:
            if tool.dependency == dependency:
                out.append(Expect.of("performance_degradation", agent=profile.agent, tool=tool.name))
                out.append(Expect.of("performance_degradation", service=profile.service))
                out.append(Expect.of("error_rate_spike", service=profile.service))
    return tuple(dict.fromkeys(out))
