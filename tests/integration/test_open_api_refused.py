"""config/production.yaml and config/safety.yaml never serve an open debug API: with
AGENTDBG_DEBUG_TOKEN (or production's AGENTDBG_SCRAPE_TOKEN) unset the daemon refuses to start,
exit code 1, with one error line naming the config key, and nothing listens on the debug port.
`validate` still passes, so the files can be checked without their secrets.

The shipped files are run as they are, with an overlay that only moves every port to a free
loopback one (other tests and a developer's `make run` may hold the defaults)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from testkit.harness import ROOT, agentdbg, free_port

PORTS_PRODUCTION = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%(grpc)d"}
      http: {endpoint: "127.0.0.1:%(http)d"}
extensions:
  health_check: {endpoint: "127.0.0.1:%(health)d"}
  debug_api: {endpoint: "127.0.0.1:%(debug)d"}
service:
  telemetry:
    metrics: {address: "127.0.0.1:%(metrics)d"}
"""


def ports() -> dict[str, int]:
    return {name: free_port() for name in ("grpc", "http", "health", "debug", "metrics")}


def run(tmp_path: Path, shipped: str, overlay: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "ports.yaml").write_text(overlay)
    clean = {k: v for k, v in os.environ.items() if k not in ("AGENTDBG_DEBUG_TOKEN", "AGENTDBG_SCRAPE_TOKEN")}
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "--config", str(ROOT / "config" / shipped),
                           "--config", str(tmp_path / "ports.yaml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "AGENTDBG_DATA_DIR": str(tmp_path / "data"), **env})


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_production_without_the_debug_token_refuses_to_start(tmp_path) -> None:
    taken = ports()
    assert agentdbg("validate", "--config", str(ROOT / "config" / "production.yaml")).returncode == 0
    done = run(tmp_path, "production.yaml", PORTS_PRODUCTION % taken, {"AGENTDBG_SCRAPE_TOKEN": "scrape"})
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "extensions::bearertokenauth/ops::tokens::0: the token is empty" in output, output
    assert "refusing to start" in output
    assert not listening(taken["debug"]) and not listening(taken["health"])


def test_production_without_the_scrape_token_refuses_to_start(tmp_path) -> None:
    done = run(tmp_path, "production.yaml", PORTS_PRODUCTION % ports(), {"AGENTDBG_DEBUG_TOKEN": "s3cret"})
    assert done.returncode == 1
    assert "extensions::bearertokenauth/ops::tokens::1: the token is empty" in done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr


def test_safety_consumer_without_the_debug_token_refuses_to_start(tmp_path) -> None:
    taken = ports()
    env = {"AGENTDBG_HEALTH_ENDPOINT": f"127.0.0.1:{taken['health']}",
           "AGENTDBG_DEBUG_ENDPOINT": f"127.0.0.1:{taken['debug']}",
           "AGENTDBG_METRICS_ADDRESS": f"127.0.0.1:{taken['metrics']}",
           "KAFKA_BROKERS": f"127.0.0.1:{free_port()}"}
    assert agentdbg("validate", "--config", str(ROOT / "config" / "safety.yaml")).returncode == 0
    done = run(tmp_path, "safety.yaml", "{}\n", env)
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "extensions::debug_api::auth: required is true but neither auth::token nor auth::authenticator" in output
    assert "AGENTDBG_DEBUG_TOKEN" in output
    assert not listening(taken["debug"])
