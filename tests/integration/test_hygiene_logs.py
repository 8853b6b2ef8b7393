"""Issue 13, hygiene: repeated warnings are rate limited, with the count of those held back.

- 7,000 bad requests (undecodable bodies and wrong bearer tokens) against the OTLP/HTTP
  receiver: every one is refused and counted, but the log holds a bounded number of
  "request rejected" lines, and the later ones say how many were held back.
- An exporter whose endpoint is a closed port, retried every few milliseconds: every retry
  is counted in `agentdbg_exporter_retried_requests`, but "send failed, will retry" is one
  line per 10 s (not one per retry) carrying `held_back`.
"""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import requests

from testkit.harness import BASE_CONFIG, Daemon, component, free_port, pipeline_overlay, wait_until
from testkit.otlp_load import agent_request

BAD_REQUESTS = 7000
AUTH = """
extensions:
  bearertokenauth: {tokens: [good-token]}
receivers:
  otlp:
    protocols:
      http: {endpoint: "{http}", auth: {authenticator: bearertokenauth}}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
service:
  extensions: [health_check, debug_api, bearertokenauth]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"""


async def send_bad(url: str, count: int) -> list[int]:
    """`count` refused requests, half with a body that is not protobuf, half with a wrong token."""
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(32)

        async def one(i: int) -> int:
            token = "good-token" if i % 2 else "wrong-token"
            headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
            async with semaphore, session.post(url, data=b"\xff\x00 not protobuf", headers=headers) as answer:
                return answer.status
        return await asyncio.gather(*(one(i) for i in range(count)))


def held_back(lines: list[str]) -> int:
    return sum(int(m.group(1)) for line in lines for m in [re.search(r"held_back=(\d+)", line)] if m)


def test_many_bad_requests_give_a_bounded_number_of_warning_lines():
    with Daemon(BASE_CONFIG, overlay=AUTH) as daemon:
        started = time.monotonic()
        statuses = asyncio.run(send_bad(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", BAD_REQUESTS))
        elapsed = time.monotonic() - started
        assert sorted(set(statuses)) == [400, 401]
        rejected = daemon.metric("agentdbg_receiver_rejected_requests_total")
    lines = [line for line in daemon.log().splitlines() if "request rejected" in line]
    assert rejected == BAD_REQUESTS
    # once per 10 s per reason (two reasons here), whatever the request rate
    assert 2 <= len(lines) <= 2 * (2 + elapsed / 10), len(lines)
    assert len(lines) + held_back(lines) <= BAD_REQUESTS


def test_exporter_retry_warnings_are_rate_limited_with_the_held_back_count():
    exporter = component("otlphttp", endpoint=f"http://127.0.0.1:{free_port()}", timeout="1s",
                         retry_on_failure="{initial_interval: 5ms, max_interval: 20ms, max_elapsed_time: 0s}")
    with Daemon(BASE_CONFIG, overlay=pipeline_overlay(exporter)) as daemon:
        started = time.monotonic()
        body = agent_request(spans=5).SerializeToString()
        requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=body,
                      headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        wait_until(lambda: daemon.metric("agentdbg_exporter_retried_requests_total") >= 50, timeout=60,
                   message="50 retries")
        lines = [line for line in daemon.log().splitlines() if "send failed, will retry" in line]
        elapsed = time.monotonic() - started
        retries = daemon.metric("agentdbg_exporter_retried_requests_total")
        daemon.kill()  # a clean stop would wait out the shutdown drain of the batch still retrying
    assert 1 <= len(lines) <= 2 + elapsed / 10, len(lines)
    assert "held_back=" in lines[0]
    assert len(lines) + held_back(lines) <= retries
