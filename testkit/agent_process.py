"""TEST CODE: the agent side's stack for the tests and the benchmark: the example agent
(examples/resilient_agent.py) as a subprocess with sutazai_agent on its path, and the daemon
overlay it runs against (triggers connector and safety processor in process, quick windows, the
debug API behind a token, spans and decisions written to files).

`AgentRun` collects the agent's JSON lines as they come: `calls()` (one per call: tier, model,
source, reason, outcome, duration, feed_connected, throttled) and `records` (also the decisions it
received, with the daemon's `decided_at` and its own `received`).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from connectors.triggers.config import TriggersConfig
from testkit.fake_openai import FakeOpenAI
from testkit.harness import ROOT, Daemon, wait_until

AGENT = ROOT / "examples" / "resilient_agent.py"
TOKEN = "agent-token"
OVERLAY = """
extensions:
  debug_api:
    auth: {token: %(token)s}
connectors:
  triggers:
    evaluation_interval: 100ms
    resolve_after: 1s%(lateness)s
    dependency_failure: {max_timeouts: 1, window: 3s}  # fires at the second timeout
    cost_budget: {budgets: [{match: {service: throttled-agent}, daily: 0.0005}], burn_rate: false}
processors:
  batch: {timeout: 50ms}
  genai: {}
  safety:
    tick_interval: 100ms
    breakers:
      ollama_model: {failure_threshold: 1, timeout: 2s}
    cost: {rate_per_minute: %(rate)d, burst_per_second: 1}
exporters:
  file/spans: {path: "{dir}/spans.jsonl", flush_interval: 50ms}
  file/decisions: {path: "{dir}/decisions.jsonl", flush_interval: 50ms}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [genai, batch], exporters: [file/spans, triggers]}
    events: {receivers: [triggers], processors: [safety], exporters: [file/decisions]}
"""
RATE_PER_MINUTE = 120
# Event-time windows wait `allowed_lateness` (5 s) before judging; this test's agent sends at once.
LATENESS = "\n    allowed_lateness: 100ms" if "allowed_lateness" in TriggersConfig.model_fields else ""


class AgentRun:
    """The example agent as a subprocess; its JSON lines collected as they come."""

    def __init__(self, python: Path, daemon: Daemon, fake: FakeOpenAI, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "agentlib"), "OPENAI_API_KEY": "test",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{daemon.ports['http']}",
               "OTEL_BSP_SCHEDULE_DELAY": "100", "AGENTDBG_DEBUG_URL": f"http://127.0.0.1:{daemon.ports['debug']}",
               "AGENTDBG_DEBUG_TOKEN": TOKEN}
        self.proc = subprocess.Popen([str(python), str(AGENT), "--base-url", fake.url, "--duration", "300", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.records: list[dict[str, Any]] = []
        self.other: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                self.other.append(line)

    def calls(self) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r["event"] == "call"]

    def wait(self, find: Callable[[list[dict[str, Any]]], Any], message: str, timeout: float = 60) -> Any:
        def found() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited with {self.proc.returncode}: {''.join(self.other)[-3000:]}")
            return find(self.calls())
        try:
            return wait_until(found, timeout=timeout, interval=0.05, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the agent's last records:\n{self.describe(30)}") from None

    def describe(self, last: int = 1000) -> str:
        """The agent's log, one short line per record (for a failure's message)."""
        return "\n".join(f"{r.get('n', '')} {r['event']} {r.get('model', r.get('action', ''))} {r.get('source', '')} "
                         f"{r.get('outcome', '')} {r.get('duration', r.get('received', 0)):.3f} {r.get('reason', '')}"
                         for r in self.records[-last:]) + "".join(self.other)[-2000:]

    def stop(self) -> list[dict[str, Any]]:
        self.proc.terminate()
        self.proc.wait(30)
        self._reader.join(10)
        return self.records


def after(calls: list[dict[str, Any]], first: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in calls if c["n"] > first["n"]]


def first(calls: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    return next((c for c in calls if all(c.get(k) == v for k, v in want.items())), None)


def daemon_decisions(daemon: Daemon) -> list[dict[str, Any]]:
    path = daemon.dir / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []



def overlay(rate_per_minute: int = RATE_PER_MINUTE) -> str:
    return OVERLAY % {"token": TOKEN, "rate": rate_per_minute, "lateness": LATENESS}


def start(daemon: Daemon) -> Daemon:
    """Start and wait for health, longer than the harness does: on a loaded 2-core machine the
    first start can take more than its 30 s."""
    daemon.start(wait=False)
    wait_until(daemon.healthy, timeout=120, interval=0.2, message=f"daemon health (log: {daemon.log_path})")
    return daemon
