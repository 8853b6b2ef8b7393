"""The suite's markdown: definitions, the per-detector table, per-fault details, every false
positive, what was injected, the seeds and the config."""
from __future__ import annotations

import re
from statistics import median
from typing import Any

from benchmarks.results import table
from evaluation.scenarios import catalogue
from evaluation.scenarios.faults import Fault
from evaluation.scenarios.findings import findings
from evaluation.scenarios.labels import ROW_OF_FAULT
from evaluation.scenarios.runner import Outcome
from evaluation.scenarios.score import SuiteScore, p50_max
from connectors.triggers.config import TriggersConfig

MAX_LISTED_FPS = 60

INJECTS = {
    "error_spike": "15 % of the service's spans fail (on top of the ~1 % background), for 6 min",
    "slow_tool": "one agent's tool (execute_tool span and its HTTP call) takes 3x as long, for 6 min",
    "memory_leak": "process.memory.usage of the baseline process (not the canary) grows 120 MB/h for 15 min, "
                   "then the process restarts (same instance id, memory back to normal)",
    "cpu_loop": "process.cpu.utilization reads 0.96-0.98 for 2 min (OTLP metrics every 10 s)",
    "tool_loop": "one invocation ends calling the same tool with the same arguments 8x (one session)",
    "dependency_timeout": "every HTTP call to the dependency times out (5 s client timeout; the agent "
                          "retries once), from every caller, for 4 min",
    "context_overflow": "every chat call of the service sends 93-97 % of its model's context window "
                        "(genai-prices: gpt-4o-mini 128k, claude-3-5-haiku 200k), for 3 min",
    "deadlock": "3 invocations (at start, +40 s, +80 s) wait 15 s after their first LLM call, no span "
                "covering the wait (orchestrator: inside a nested worker agent)",
    "cost_overrun": "a bad deploy: the service switches to its expensive model (gpt-4o / claude-sonnet-4) "
                    "with ~10k-token prompts and 5x traffic, until the end (priced by the genai processor)",
}


def _subject(fault: Fault) -> str:
    detail = fault.dependency or fault.tool
    return f"{fault.service}" + (f" / {detail}" if detail else "")


def detector_table(suite: SuiteScore) -> str:
    rows = []
    for row in suite.rows.values():
        recall = f"{row.detected}/{row.injected} ({row.recall:.0%})" if row.recall is not None else "-"
        resolved = (f"{len(row.resolved_after)}/{row.ending} (p50 {median(row.resolved_after):.0f} s)"
                    if row.resolved_after else (f"0/{row.ending}" if row.ending else "n/a"))
        episodes = f"{sum(row.episodes) / len(row.episodes):.1f}" if row.episodes else "-"
        rows.append([row.row, recall, p50_max(row.latencies), resolved, episodes,
                     f"{row.fp_scenarios}/{suite.scenarios} ({suite.fp_rate(row):.1%})",
                     f"{row.fp_events} ({suite.fp_per_100_service_hours(row):.1f})", row.consequence_events])
    return table(["detector", "recall", "latency p50 / max (s)", "resolved after the fault ended",
                  "episodes per fault", "FP rate (scenarios with a FP)", "FP events (per 100 service-h)",
                  "consequence events"], rows)


def notes(outcome: Outcome) -> str:
    """Cost: when each alert came; elsewhere: more than one episode for one fault (a flap)."""
    label = outcome.label
    if label is None:
        return ""
    if label.fault.kind == "cost_overrun":
        seen: dict[str, float] = {}
        for e in outcome.detections:
            found = re.search(r"alert at (\d+)%", e.message)
            name = f"daily {found.group(1)} %" if found else "burn rate"
            seen.setdefault(name, e.at - label.start)
        return "; ".join(f"{name} +{at:.0f} s" for name, at in seen.items())
    episodes = {e.episode for e in outcome.detections}
    if len(episodes) <= 1:
        return ""
    resolved = [e.at for e in outcome.resolutions if label.end is None or e.at < label.end]
    during = f", resolved during the fault at {', '.join(f'{t:.0f}' for t in resolved)} s" if resolved else ""
    return f"{len(episodes)} episodes{during}"


def fault_table(outcomes: list[Outcome]) -> str:
    rows = []
    for o in outcomes:
        if o.label is None:
            continue
        end = f"{o.label.end:.0f}" if o.label.end is not None else "-"
        latency = f"{o.latency:.0f}" if o.latency is not None else "**missed**"
        resolved = (f"{o.resolved_after:.0f}" if o.resolved_after is not None
                    else ("n/a" if o.label.end is None else "not by the end"))
        rows.append([o.scenario.name, o.scenario.fleet, _subject(o.label.fault), f"{o.label.start:.0f}", end,
                     latency, resolved, len(o.consequences), len(o.false_positives), notes(o)])
    return table(["scenario", "fleet", "injected on", "start (s)", "end (s)", "detected after (s)",
                  "resolved after the end (s)", "consequence events", "FP events", "notes"], rows)


def fp_table(outcomes: list[Outcome]) -> str:
    rows: list[list[Any]] = []
    for o in outcomes:
        for e in o.false_positives:
            rows.append([o.scenario.name, o.scenario.fleet, e.row, e.subject_key, f"{e.at:.0f}",
                         f"{e.observed:g} / {e.threshold:g}", e.message])
    if not rows:
        return "None."
    shown = table(["scenario", "fleet", "detector", "subject", "at (s)", "observed / threshold", "message"],
                  rows[:MAX_LISTED_FPS])
    return shown + (f"\n\n({len(rows) - MAX_LISTED_FPS} more not listed.)" if len(rows) > MAX_LISTED_FPS else "")


def injection_table() -> str:
    rows = []
    for kind, (targets, _) in catalogue.TARGETS.items():
        by_seed = ", ".join(f"{seed}: {catalogue.fault_for(kind, seed).service}"
                            + (f"/{t}" if (t := targets[(seed - 1) % len(targets)][1]) else "")
                            for seed in catalogue.SEEDS)
        rows.append([f"`{kind}`", ROW_OF_FAULT[kind], INJECTS[kind], by_seed])
    return table(["fault", "scored as", "what is injected", "subject by seed"], rows)


def config_lines() -> str:
    """The detector settings in force: `TriggersConfig()`, the product defaults, unchanged."""
    dump = TriggersConfig().model_dump()
    shared = ", ".join(f"{k}={v}" for k, v in dump.items() if not isinstance(v, dict))
    lines = [f"- shared: {shared}"]
    for name, block in dump.items():
        if isinstance(block, dict):
            scalars = ", ".join(f"{k}={v}" for k, v in block.items() if not isinstance(v, (list, dict)))
            lines.append(f"- `{name}`: {scalars}")
    return "\n".join(lines)


def markdown(outcomes: list[Outcome], suite: SuiteScore, wall_seconds: float, jobs: int) -> str:
    spans = sum(o.spans for o in outcomes)
    cpu = sum(o.cpu_seconds for o in outcomes)
    faulty = [o for o in outcomes if o.label is not None]
    healthy = [o for o in outcomes if o.label is None]
    sim_hours = sum(o.scenario.duration for o in outcomes) / 3600
    errors = sum(o.detector_errors for o in outcomes)
    snapshots = sum(o.snapshots for o in outcomes)
    return f"""
{len(outcomes)} seeded scenarios ({len(faulty)} with one injected fault, {len(healthy)} healthy-only), {sim_hours:.1f} simulated hours, {spans:,} spans, through the default pipeline `genai → triggers` in process with the **product default config** (`GenAIConfig()`, `TriggersConfig()`). Simulated time: one OTLP traces batch per simulated second (`received_at` = that second; each span exported 0.1-1 s after it ends, as an SDK batch processor does), OTLP metrics every 10 s, and the connector's evaluation (each detector's `evaluate(now)` into the connector's `EpisodeTracker`, then `emit`) every `evaluation_interval` (0.25 s) of simulated time. {cpu:.0f} CPU s in {wall_seconds:.0f} s wall on {jobs} processes; detector errors: {errors}; health snapshots emitted: {snapshots}.

Definitions. **Recall**: faults detected / faults injected; detected = at least one `firing` event, at or after the fault's start, of the fault's kind, whose subject contains the injected subject (tool loop: service, agent, tool and session; CPU loop: the service alone). **Latency**: simulated seconds from the fault's start to that first event; it includes what the definition itself needs (5-min error window, 30 s of CPU readings, a 15 s block plus the 5 s decision wait) and, for per-call detectors at low traffic, the wait for the first faulty call. **Episodes per fault**: distinct firing episodes that detected one fault; `cost_budget` raises one per subject (service and agent) and alert (burn rate, daily 80 %, daily 100 %) by design. **Resolved**: for faults that end inside the scenario, every detected episode emitted `resolved` by the scenario's end; time from the fault's end to the last `resolved` (n/a: the cost overrun is never stopped, and budget episodes last until the UTC day rolls over). **Consequence events**: firing events the fault physically causes in another detector (timeouts slow the calling tool, its invocations, and raise its error rate; blocked invocations are slow; oversized prompts cost money) — listed per fault, neither detections nor false positives. **False positive**: any other firing event, including one on the injected subject before the fault began. **FP rate**: scenarios (of all {len(outcomes)}, faulty and healthy) in which the detector raised at least one false positive; the per-100-service-hours figure divides FP events by services × simulated hours. Target < 5 %, aim 0.

{detector_table(suite)}

### Findings

{findings(outcomes, suite)}

Detector fix made while building this suite — **deadlock** (`connectors/triggers/detectors/deadlock.py`): a trace that went quiet for `decision_wait` (5 s) was dropped from the buffer, although SDKs export children as they end and one LLM call or tool often lasts longer than that; when the agent span arrived later it was judged without the children that came before it, so a healthy 24 s coder invocation with a 7 s test run "was blocked for 17.6 s". Before the fix this fired in almost every scenario (coder-agent, the noisy fleet's summarizer, every caller during a dependency timeout, nested orchestrator workers). Now a quiet trace whose root span has not arrived is kept aside (bounded by `max_traces`) and resumed when more of it arrives; regression tests in `tests/unit/test_trigger_deadlock.py`.

### Faults

{fault_table(outcomes)}

### False positives

{fp_table(outcomes)}

### What each scenario injects

Fleets: **standard** = 6 agent services (support on gpt-4o-mini with a 20 % canary, researcher and coder on local models, an SQL analyst, an orchestrator with nested workers, billing on claude-3-5-haiku; Poisson arrivals 0.04-0.5 invocations/s per service, lognormal latencies, varied token counts, ~1 % background errors, 0.2 % single HTTP timeouts with one legit retry, conversations with up to 3 identical tool calls, memory flat ± 1 MB, CPU 0.3-0.45 ± 0.05). **noisy** = standard plus: traffic bursts (researcher 4x for 3 min, 3x for 2 min), a slow but stable summarizer (12 s LLM calls, 15-40 s agent spans), sql-agent with a constant ~3 % span error floor, billing with 2 % timeouts and retries, coder with up to 4 identical calls per session (one below the loop threshold), GC sawtooth (8 MB) and 3 MB memory noise, short CPU spikes (≤ 3 readings ≥ 0.92), 2 % long-context calls (60-85 % of the window). Paid services' healthy spend stays under the default $10/day budget. Faults start 10-12 simulated minutes in; scenarios last {catalogue.DURATION // 60} min ({catalogue.LONG_DURATION // 60} min for memory leaks, whose 30-min regression window needs time to clear).

{injection_table()}

Seeds: faulty scenarios use seeds {', '.join(map(str, catalogue.SEEDS))} (seeds {', '.join(map(str, catalogue.NOISY_SEEDS))} on the noisy fleet); healthy-only scenarios use seeds {', '.join(map(str, catalogue.HEALTHY_SEEDS))} (seeds {', '.join(map(str, catalogue.NOISY_HEALTHY_SEEDS))} noisy). The same seed gives the same spans, metrics and events.

Config (product defaults, `TriggersConfig()`; metric-name lists, overrides and budgets at their defaults):

{config_lines()}
"""
