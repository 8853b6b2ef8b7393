"""Issue 9, points 6 and 8: `agentdbg validate` and start-up on configs a new operator writes.

Each test runs the real command line (or the daemon) and reads what an operator reads: the
exit code and the error lines. Before the fix: production.yaml exported to its own receiver
by default and nothing refused it (7 spans became 273 in 8 s); `localhost:99999` validated
and bound a random port; a missing variable said only "invalid endpoint ''"; one invalid
processor also produced "references processor ... which is not configured".
"""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from testkit.harness import BASE_CONFIG, ROOT, Daemon, agentdbg, file_exporter, pipeline_overlay, wait_until

PRODUCTION = str(ROOT / "config" / "production.yaml")


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("invalid configuration"))
    return [line.strip() for line in lines[start + 1:] if line.startswith("  ")]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


TRACES_TO = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
exporters:
{exporters}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{names}]
"""


def traces_to(exporters: str, names: str, grpc: str = "0.0.0.0:4317", http: str = "localhost:4318") -> str:
    return TRACES_TO.format(exporters=exporters, names=names, grpc=grpc, http=http)


# -- point 6: no exporter aimed at the daemon's own receivers -------------------------------------
def test_production_default_does_not_export_to_itself():
    result = agentdbg("validate", "--config", PRODUCTION)
    assert result.returncode == 0, result.stderr


# More spellings of this machine are in tests/unit/test_hardening_netaddr.py.
@pytest.mark.parametrize("tempo", ["localhost:4317", "[::1]:4317", "http://127.0.0.1:4317"])
def test_production_refuses_tempo_endpoint_that_is_its_own_receiver(tempo):
    result = agentdbg("validate", "--config", PRODUCTION, env={"TEMPO_ENDPOINT": tempo})
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f'exporters::otlp/tempo::endpoint "{tempo}"')
    assert "${env:TEMPO_ENDPOINT:-tempo:4317}" in errors[0]
    assert "is this daemon's own receiver receivers::otlp::protocols::grpc::endpoint" in errors[0]


def test_self_loop_and_two_servers_on_one_address_are_one_line_each(tmp_path):
    config = traces_to("  otlphttp:\n    endpoint: http://127.0.0.1:4318\n", "otlphttp") + """
extensions:
  health_check:
    endpoint: localhost:13999
  debug_api:
    endpoint: 127.0.0.1:13999
"""
    config = config.replace("service:\n", "service:\n  extensions: [health_check, debug_api]\n")
    result = agentdbg("validate", "--config", write(tmp_path, config))
    assert result.returncode == 1
    assert error_lines(result) == [
        'exporters::otlphttp::endpoint "http://127.0.0.1:4318" is this daemon\'s own receiver '
        'receivers::otlp::protocols::http::endpoint ("localhost:4318"): every span sent there would come back '
        "in and be sent again; point it at the backend",
        'extensions::debug_api::endpoint "127.0.0.1:13999" is also extensions::health_check::endpoint '
        '("localhost:13999"): two servers cannot listen on one address']


def test_exporter_to_another_port_or_host_is_accepted(tmp_path):
    config = traces_to("  otlp:\n    endpoint: localhost:14317\n  otlp/b:\n    endpoint: tempo.internal:4317\n",
                       "otlp, otlp/b")
    result = agentdbg("validate", "--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr


def test_start_up_refuses_a_self_loop(tmp_path):
    """`run` refuses it too (not only `validate`): exit 1 before any port is bound."""
    overlay = pipeline_overlay("  otlp:\n    endpoint: {grpc}\n    tls: {insecure: true}\n")
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=overlay)
    daemon.start(wait=False)
    assert daemon.proc.wait(60) == 1
    log = daemon.log()
    assert "exporters::otlp::endpoint" in log and "receivers::otlp::protocols::grpc::endpoint" in log
    assert "Traceback" not in log


def test_reload_refuses_a_self_loop_and_keeps_running(tmp_path):
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=pipeline_overlay(file_exporter())) as daemon:
        daemon.write_overlay(pipeline_overlay("  otlp:\n    endpoint: {grpc}\n    tls: {insecure: true}\n"))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: daemon.metric("agentdbg_config_reloads_total", result="rejected") == 1, timeout=15,
                   message="the reload to be rejected")
        assert "is this daemon's own receiver receivers::otlp::protocols::grpc::endpoint" in daemon.log()
        assert daemon.healthy()


# -- point 8: bad values get one clear line each, and only the root causes ----------------------------
BAD_VALUES = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: localhost:99999
      http:
        endpoint: ${env:AGENTDBG_TEST_NEVER_SET}
processors:
  batch:
    timeout: 5 parsecs
exporters:
  kafkaa:
    brokers: [localhost:9092]
  debug:
service:
  telemetry:
    metrics:
      address: localhost:70000
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafkaa, debug]
"""


def test_bad_values_are_one_line_each_naming_key_and_variable(tmp_path):
    """Before: `localhost:99999` and `localhost:70000` passed, the missing variable was only
    "invalid endpoint ''", and the pipeline added "references processor "batch" / exporter
    "kafkaa" which is not configured"."""
    result = agentdbg("validate", "--config", write(tmp_path, BAD_VALUES))
    assert result.returncode == 1
    errors = error_lines(result)
    assert len(errors) == 5, errors
    assert errors.pop(3).startswith("exporters::kafkaa: unknown type 'kafkaa' (valid exporters: ")
    assert errors == [
        "receivers::otlp::protocols::grpc::endpoint: Value error, invalid endpoint 'localhost:99999': "
        "port 99999 is out of range 0-65535 (got 'localhost:99999')",
        "receivers::otlp::protocols::http::endpoint: Value error, invalid endpoint '': expected host:port "
        "(got '') (from ${env:AGENTDBG_TEST_NEVER_SET}; environment variable AGENTDBG_TEST_NEVER_SET is not set)",
        "processors::batch::timeout: Value error, invalid duration '5 parsecs': use a number with a unit "
        "such as 200ms, 5s, 1m30s, 1h (got '5 parsecs')",
        "service::telemetry::metrics::address: Value error, invalid endpoint 'localhost:70000': "
        "port 70000 is out of range 0-65535 (got 'localhost:70000')",
    ]
