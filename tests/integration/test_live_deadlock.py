"""Live deadlock through the running daemon, from real clients that announce open spans:

- partial-span-processor 0.0.9 on the OpenTelemetry SDK (heartbeat log records on /v1/logs),
  by hand and through the project's agent-side library (sutazai_agent.configure, live_spans);
- logfire 5.4 with pending spans (its exporter to a Logfire backend, pointed at the daemon by
  advanced.base_url: the only OTLP exporter of logfire that sends them).

The daemon: otlp receiver, the traces and logs pipelines into the `triggers` connector, its
events into a file. The limit is 2 s here (heartbeats every 200 ms) so each test runs in
seconds; benchmarks/bench_live_deadlock.py measures the product's 10 s limit with a 15 s block.
No test asserts a duration: each checks the order of what happened (fired while the call was
still blocked, resolved after it returned), which the marks the client prints make checkable.
"""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from testkit.harness import BASE_CONFIG, ROOT, Daemon, wait_until
from testkit.trigger_helpers import read_events, triggers_overlay, wait_for_events

CLIENTS = ROOT / "tests" / "clients"
VENVS = ROOT / ".cache" / "clients"
TRIGGERS = """\
      evaluation_interval: 100ms
      deadlock: {blocked_limit: 2s, decision_wait: 300ms}
"""
LOGS = """
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [triggers]
"""
FAST = {"HEARTBEAT_MS": "200", "INITIAL_DELAY_MS": "0", "PROCESS_MS": "50"}
pytestmark = pytest.mark.timeout(120)


def python(family: str) -> Path:
    """The family venv's python (`make clients`); skipped when missing, a failure under CI=true."""
    if not (VENVS / family / ".installed-stamp").exists():
        message = f"the {family} client venv is missing: `make clients` (part of `make test`) builds it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return VENVS / family / "bin" / "python"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    running = Daemon(BASE_CONFIG, overlay=[triggers_overlay(TRIGGERS), LOGS]).start(wait=False)
    try:  # a loaded machine can take longer than the harness's 30 s to start it
        wait_until(running.healthy, timeout=120, interval=0.2, message=f"daemon health (log: {running.log_path})")
        yield running
    finally:
        running.stop()
        running.kill()


def start(daemon: Daemon, family: str, script: str, service: str, *args: str, **env: str) -> subprocess.Popen:
    run_env = {**os.environ, "OTLP_ENDPOINT": f"http://127.0.0.1:{daemon.ports['http']}", "SERVICE_NAME": service,
               "PYTHONPATH": str(CLIENTS), **env}
    return subprocess.Popen([str(python(family)), str(CLIENTS / f"{script}.py"), *args], env=run_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def marks(proc: subprocess.Popen) -> dict[str, float]:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def deadlocks(daemon: Daemon, service: str) -> list[dict[str, Any]]:
    return [e for e in read_events(daemon.dir / "events.jsonl")
            if e["kind"] == "deadlock" and e["subject"].get("service") == service]


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def check_blocked_then_resolved(daemon: Daemon, service: str, done: dict[str, float]) -> None:
    """One live episode: fired while the tool call was blocked, resolved after it returned."""
    wait_for_events(daemon.dir / "events.jsonl", lambda e: e["kind"] == "deadlock" and e["status"] == "resolved"
                    and e["subject"].get("service") == service, timeout=30)
    events = deadlocks(daemon, service)
    assert [e["status"] for e in events] == ["firing", "resolved"], events
    fired, resolved = events
    assert fired["episode"] == resolved["episode"] and fired["subject"] == {"service": service, "agent": "planner"}
    assert done["block_start"] < at(fired["emitted_at"]) < done["block_end"] <= at(resolved["emitted_at"])
    assert len(fired["examples"]["trace_ids"]) == 1 and fired["examples"]["span_ids"]


def test_partial_span_heartbeats_an_agent_blocked_in_a_tool_call_fires_and_resolves(daemon: Daemon) -> None:
    """While it is blocked, GET /debug/inflight shows where: the agent and its open tool call."""
    proc = start(daemon, "partial", "partial_agent", "psp-blocked", "blocked", BLOCK_S="5", **FAST)
    wait_for_events(daemon.dir / "events.jsonl", lambda e: e["kind"] == "deadlock" and e["status"] == "firing"
                    and e["subject"].get("service") == "psp-blocked", timeout=30)
    answer = requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/inflight", timeout=10)
    assert answer.status_code == 200, answer.text
    open_spans = {s["name"]: s for s in answer.json()["spans"] if s["service"] == "psp-blocked"}
    agent, tool = open_spans["invoke_agent planner"], open_spans["execute_tool search"]
    assert (agent["role"], tool["role"], tool["parent_span_id"]) == ("agent", "other", agent["span_id"])
    assert agent["trace_id"] == tool["trace_id"] and not agent["stopped"]
    done = marks(proc)
    check_blocked_then_resolved(daemon, "psp-blocked", done)


def test_partial_span_heartbeats_no_deadlock_for_busy_quick_or_streaming_agents(daemon: Daemon) -> None:
    """Side by side: a 4 s agent whose LLM calls end every 0.5 s, an agent that ends 0.5 s before
    the limit (the 0.1 s edge is tests/unit/test_trigger_live_deadlock.py's, on a manual clock),
    and a 4 s streaming LLM call (under the 120 s ceiling). Then a blocked one, so the run is
    known to have been judged: its event comes, theirs do not."""
    runs = [start(daemon, "partial", "partial_agent", "psp-busy", "busy", RUN_S="4", STEP_S="0.5", **FAST),
            start(daemon, "partial", "partial_agent", "psp-quick", "quick", END_S="1.5", **FAST),
            start(daemon, "partial", "partial_agent", "psp-stream", "streaming", RUN_S="4", **FAST)]
    for proc in runs:
        marks(proc)
    done = marks(start(daemon, "partial", "partial_agent", "psp-control", "blocked", BLOCK_S="3", **FAST))
    check_blocked_then_resolved(daemon, "psp-control", done)
    for service in ("psp-busy", "psp-quick", "psp-stream"):
        assert deadlocks(daemon, service) == [], service


def test_agentlib_live_spans_an_agent_blocked_in_a_tool_call_is_judged_live(daemon: Daemon) -> None:
    """sutazai_agent.configure installs partial-span-processor with its default timing (first
    heartbeat 5 s after a span starts, checked every 5 s): the block outlasts that."""
    done = marks(start(daemon, "partial", "partial_agent", "lib-blocked", "agentlib", "blocked", BLOCK_S="13"))
    check_blocked_then_resolved(daemon, "lib-blocked", done)


def test_logfire_pending_spans_an_agent_blocked_in_a_tool_call_fires_and_resolves(daemon: Daemon) -> None:
    done = marks(start(daemon, "logfire", "logfire_pending_agent", "lf-blocked", BLOCK_S="4"))
    check_blocked_then_resolved(daemon, "lf-blocked", done)
