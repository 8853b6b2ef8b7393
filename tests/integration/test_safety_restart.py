"""The in-process safety processor (config/default.yaml's shape: spans → triggers → safety)
across a restart: the detectors start empty, so the episode that opened a breaker is never
resolved. The breaker must probe (half-open) and close after its timeout with no traffic,
and never step down the fallback chain without a fresh failure."""
from __future__ import annotations

import signal

import pytest
import requests

from testkit.harness import BASE_CONFIG, Daemon, wait_until
from tests.integration.test_safety_inprocess import send_spans
from testkit.webhook_sink import WebhookSink

OVERLAY = """
connectors:
  triggers:
    evaluation_interval: 100ms
    resolve_after: 60s
    error_rate_spike: {{min_count: 20, window: 3s}}
processors:
  safety:
    state_file: "{{dir}}/safety.json"
    tick_interval: 100ms
    breakers:
      checkout_api:
        failure_threshold: 1
        timeout: 1s
        fallback: tinyllama
        match: [{{kinds: [error_rate_spike], subject: {{service: checkout}}}}]
exporters:
  webhook:
    endpoint: {hook}
    actions: [breaker_open, fallback, breaker_half_open, breaker_close]
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 100ms}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [triggers]}}
    events: {{receivers: [triggers], processors: [safety], exporters: [webhook]}}
"""


@pytest.fixture
def webhook():
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def breaker(daemon: Daemon) -> dict:
    return requests.get(f"http://127.0.0.1:{daemon.ports['debug']}/debug/breakers", timeout=2).json()["checkout_api"]


def test_an_open_breaker_with_no_fresh_failure_closes_after_a_restart(tmp_path, webhook):
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=OVERLAY.format(hook=webhook.url))
    with daemon:
        send_spans(daemon.ports["grpc"], "checkout", 60, failing=True)
        wait_until(lambda: breaker(daemon)["state"] == "open", timeout=15, message="breaker open")
        daemon.signal(signal.SIGKILL)  # the error episode is still firing, and dies with the detector
        daemon.proc.wait(10)
    before = len(webhook.calls)

    with daemon:  # same directory, same state file; no traffic at all
        wait_until(lambda: breaker(daemon)["state"] == "closed" and breaker(daemon)["tier"] == 0, timeout=20,
                   message="the restored open breaker probed, closed and stepped back to the primary")
        after = [c["body"] for c in webhook.calls[before:]]
        assert [d["action"] for d in after] == ["breaker_half_open", "breaker_close", "fallback"], after
        assert all(d["state"]["tier"] <= 1 for d in after), "it never stepped down the chain"
        assert after[-1]["state"]["fallback"] is None
