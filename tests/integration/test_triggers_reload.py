"""Trigger state survives a SIGHUP reload: a firing episode is neither forgotten nor re-raised."""
from __future__ import annotations

import signal

from opentelemetry.trace import Status, StatusCode

from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.trigger_helpers import read_events, sdk_tracer, triggers_overlay, wait_for_events

EVALUATIONS = "agentdbg_trigger_evaluation_seconds_count"

BEFORE = """
    evaluation_interval: 100ms
    resolve_after: 1s
    error_rate_spike: {min_count: 20, window: 4s}
"""
AFTER = """
    evaluation_interval: 50ms
    resolve_after: 1s
    error_rate_spike: {min_count: 20, window: 4s, severity: warning}
"""


def send(endpoint: str, service: str, count: int, failing: bool) -> None:
    provider, tracer = sdk_tracer(endpoint, service)
    for index in range(count):
        with tracer.start_as_current_span("POST /order") as span:
            if failing and index % 3 == 0:
                span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()


def test_a_firing_episode_carries_over_a_reload_and_resolves_once(tmp_path):
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=triggers_overlay(BEFORE))
    events = tmp_path / "events.jsonl"
    with daemon:
        endpoint = f"http://127.0.0.1:{daemon.ports['http']}"
        send(endpoint, "orders", 60, failing=True)
        [fired] = wait_for_events(events, lambda e: e["kind"] == "error_rate_spike")
        (tmp_path / "overlay.yaml").write_text(daemon.fill(triggers_overlay(AFTER)))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in daemon.log(), message="reload applied")
        send(endpoint, "orders", 30, failing=True)  # still failing after the reload
        seen = daemon.metric(EVALUATIONS) + 2  # the connector has judged these spans by then
        wait_until(lambda: daemon.metric(EVALUATIONS) >= seen, message="two evaluations after the reload")
        assert [e["status"] for e in read_events(events)] == ["firing"], "no second firing after the reload"
        [resolved] = wait_for_events(events, lambda e: e["status"] == "resolved", timeout=20)
    assert resolved["episode"] == fired["episode"]
    assert [e["status"] for e in read_events(events)] == ["firing", "resolved"]
