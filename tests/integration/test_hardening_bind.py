"""Issue 9, point 8: a daemon that cannot listen says so in one line and exits 1.

Each test takes one of the daemon's addresses with a real listening socket, then runs
`agentdbg run` whose addresses all come from environment variables, as in
config/default.yaml. The operator must read one error line naming the config key, the
address and the variable that moves it, and no traceback. Before the fix a taken metrics
port gave a Python traceback, a taken health port a message naming no key, and
`localhost:99999` bound a random port.
"""
from __future__ import annotations

import socket

import pytest

from testkit.harness import agentdbg, free_port

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:T_GRPC}
      http:
        endpoint: ${env:T_HTTP}
exporters:
  debug:
extensions:
  health_check:
    endpoint: ${env:T_HEALTH}
  debug_api:
    endpoint: ${env:T_DEBUG}
service:
  extensions: [health_check, debug_api]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: ${env:T_METRICS}
"""

KEYS = {
    "T_GRPC": "receivers::otlp::protocols::grpc::endpoint",
    "T_HTTP": "receivers::otlp::protocols::http::endpoint",
    "T_METRICS": "service::telemetry::metrics::address",
    "T_HEALTH": "extensions::health_check::endpoint",
    "T_DEBUG": "extensions::debug_api::endpoint",
}


@pytest.mark.parametrize("variable", list(KEYS), ids=[k.removeprefix("T_").lower() for k in KEYS])
def test_a_taken_port_is_one_line_naming_key_address_and_variable(tmp_path, variable):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {name: f"127.0.0.1:{free_port()}" for name in KEYS}
    with socket.socket() as holder:  # someone else already listens there
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        env[variable] = taken
        result = agentdbg("run", "--config", str(config), env=env)
    output = result.stderr + result.stdout
    assert result.returncode == 1, output
    assert "Traceback" not in output
    problems = [line for line in output.splitlines() if "level=error" in line or "level=warn" in line]
    assert len(problems) == 1, output
    line = problems[0]
    assert f"cannot listen on {taken} ({KEYS[variable]}): address already in use" in line
    assert f"set {variable} to another host:port (the value is ${{env:{variable}}})" in line


def test_a_port_out_of_range_never_binds(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {name: f"127.0.0.1:{free_port()}" for name in KEYS}
    env["T_HEALTH"] = "localhost:99999"
    result = agentdbg("run", "--config", str(config), env=env)
    assert result.returncode == 1
    assert ("extensions::health_check::endpoint: Value error, invalid endpoint 'localhost:99999': "
            "port 99999 is out of range 0-65535") in result.stderr
    assert "(from ${env:T_HEALTH})" in result.stderr
