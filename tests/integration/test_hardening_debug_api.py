"""Issue 9, point 8: `GET /debug/decisions?since=...` with a time an operator types.

A real error spike makes the in-process safety processor decide something; then the debug
API is asked for decisions since a time without a zone (before the fix: HTTP 500, the
naive time compared with the zoned decision times) and since a value that is no time.
"""
from __future__ import annotations

import time

import requests

from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.trigger_helpers import SdkAgent

OVERLAY = """
connectors:
  triggers:
    evaluation_interval: 100ms
    error_rate_spike: {min_count: 20, window: 3s}
processors:
  safety:
    state_file: "{dir}/safety.json"
    tick_interval: 100ms
exporters:
  file/decisions: {path: "{dir}/decisions.jsonl"}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [triggers]}
    events: {receivers: [triggers], processors: [safety], exporters: [file/decisions]}
"""


def test_since_without_zone_is_utc_and_garbage_is_400(tmp_path):
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=OVERLAY) as daemon:
        debug = f"http://127.0.0.1:{daemon.ports['debug']}/debug"
        agent = SdkAgent(f"http://127.0.0.1:{daemon.ports['http']}", "checkout")
        now = time.time()
        for index in range(40):
            agent.span("POST /checkout", now - 1, now - 0.9, error="payment failed" if index % 2 else None)
        agent.shutdown()
        decided = wait_until(lambda: requests.get(f"{debug}/decisions", timeout=2).json(), timeout=20,
                             message="a safety decision")
        naive = requests.get(f"{debug}/decisions", params={"since": "2020-01-01T00:00:00"}, timeout=2)
        assert naive.status_code == 200, naive.text
        assert all(doc in naive.json() for doc in decided)  # every decision is after 2020 (UTC)
        future = requests.get(f"{debug}/decisions", params={"since": "2999-01-01T00:00:00"}, timeout=2)
        assert future.status_code == 200 and future.json() == []
        garbage = requests.get(f"{debug}/decisions", params={"since": "yesterday"}, timeout=2)
        assert garbage.status_code == 400
        assert "since='yesterday' is not an RFC 3339 time" in garbage.text
