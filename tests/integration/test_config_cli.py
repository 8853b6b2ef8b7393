"""Acceptance 4, part 1: the `agentdbg` command line on config files, as an operator runs it.

`validate` reports every mistake at once, each with its path, and exits non-zero; several
`--config` files deep-merge with the later one winning and lists replaced; `${env:VAR}`,
`${VAR:-default}` and `$$` expand as in otelcol; `components` lists what the build knows.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import requests

from testkit.harness import BASE_CONFIG, Daemon, agentdbg, file_exporter, pipeline_overlay, wait_until


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The indented error lines `validate` prints under its 'invalid configuration' header."""
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("invalid configuration"))
    return [line.strip() for line in lines[start + 1:] if line.startswith("  ")]


# Both files start alike: an otlp receiver and a batch processor.
HEAD = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
processors:
  batch:
    timeout: 1s
"""

VALID = HEAD + """exporters:
  debug:
  file:
    path: out/spans.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file, debug]
"""

FIVE_MISTAKES = HEAD + """    send_batch_sise: 10          # unknown key in a component
  batch/slow:
    timeout: 5 parsecs           # bad duration
exporters:
  kafkaa:                        # unknown exporter type
    brokers: [localhost:9092]
  debug:
  file:
    path: out.jsonl
    rotation:
      max_megabytes: lots        # wrong type for a field
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [x]            # not configured
      exporters: [debug]
"""


def test_validate_accepts_a_good_file(tmp_path):
    result = agentdbg("validate", "--config", write(tmp_path, "good.yaml", VALID))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_reports_all_five_mistakes_with_their_paths(tmp_path):
    result = agentdbg("validate", "--config", write(tmp_path, "bad.yaml", FIVE_MISTAKES))
    assert result.returncode != 0
    errors = error_lines(result)
    assert len(errors) == 5, result.stderr
    expected = {
        "exporters::kafkaa: unknown type": "kafkaa",
        "processors::batch::send_batch_sise: unknown key": "send_batch_size",  # lists the valid keys
        "processors::batch/slow::timeout:": "5 parsecs",
        "exporters::file::rotation::max_megabytes:": "lots",
        'service::pipelines::traces: references processor "x" which is not configured': "",
    }
    for prefix, mention in expected.items():
        line = next((e for e in errors if e.startswith(prefix)), None)
        assert line is not None, f"no error starting {prefix!r} in:\n{result.stderr}"
        assert mention in line
    unknown_type = next(e for e in errors if e.startswith("exporters::kafkaa"))
    assert "debug" in unknown_type and "file" in unknown_type  # an unknown type lists the valid ones


def test_run_refuses_to_start_on_a_bad_file(tmp_path):
    result = agentdbg("run", "--config", write(tmp_path, "bad.yaml", FIVE_MISTAKES))
    assert result.returncode != 0
    assert len(error_lines(result)) == 5


def test_validate_reports_yaml_syntax_and_missing_files(tmp_path):
    broken = write(tmp_path, "broken.yaml", "receivers:\n  otlp: [\n")
    result = agentdbg("validate", "--config", broken, "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode != 0
    errors = error_lines(result)
    assert any(e.startswith(broken) and "line" in e for e in errors), result.stderr
    assert any("missing.yaml" in e for e in errors), result.stderr


def test_several_config_files_deep_merge_later_wins_lists_replaced(tmp_path):
    base = write(tmp_path, "base.yaml", VALID.replace("processors: [batch]", "processors: [x]")
                 .replace("timeout: 1s", "timeout: forever"))
    alone = agentdbg("validate", "--config", base)
    assert alone.returncode != 0 and len(error_lines(alone)) == 2
    # The overlay fixes both mistakes: a scalar (later wins) and a list (replaced, not appended);
    # it names only one key of `file`, so its `path` must survive (deep merge).
    overlay = write(tmp_path, "overlay.yaml", """
processors:
  batch:
    timeout: 2s
exporters:
  file:
    flush_interval: 100ms
service:
  pipelines:
    traces:
      processors: [batch]
""")
    merged = agentdbg("validate", "--config", base, "--config", overlay)
    assert merged.returncode == 0, merged.stderr
    # The order matters: the base given last wins again.
    reversed_order = agentdbg("validate", "--config", overlay, "--config", base)
    assert reversed_order.returncode != 0
    inline = agentdbg("validate", "--config", base, "--config", overlay,
                      "--config", "yaml:processors::batch::timeout: never")
    assert inline.returncode != 0 and "never" in inline.stderr


def test_environment_expansion(tmp_path):
    config = write(tmp_path, "env.yaml", VALID.replace("timeout: 1s", "timeout: ${env:BATCH_TIMEOUT}")
                   .replace("path: out/spans.jsonl", "path: out/spans.jsonl\n    flush_interval: ${FLUSH:-250ms}"))
    assert agentdbg("validate", "--config", config, env={"BATCH_TIMEOUT": "2s"}).returncode == 0
    bad = agentdbg("validate", "--config", config, env={"BATCH_TIMEOUT": "twice"})
    assert bad.returncode != 0 and "processors::batch::timeout" in bad.stderr and "twice" in bad.stderr
    # The default is used only when the variable is unset; set but empty is empty.
    env = {"BATCH_TIMEOUT": "2s", "FLUSH": ""}
    empty = agentdbg("validate", "--config", config, env=env)
    assert empty.returncode != 0 and "exporters::file::flush_interval" in empty.stderr
    assert agentdbg("validate", "--config", config, env={"BATCH_TIMEOUT": "2s", "FLUSH": "1s"}).returncode == 0


def test_components_lists_every_kind():
    result = agentdbg("components")
    assert result.returncode == 0, result.stderr
    sections: dict[str, list[str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if re.match(r"^[a-z]+:", line):
            current = line.split(":")[0]
            sections[current] = []
        elif line.strip() and current:
            sections[current].append(line.split()[0])
    assert {"receivers", "processors", "exporters", "extensions"} <= set(sections)
    assert "otlp" in sections["receivers"]
    assert {"batch", "memory_limiter"} <= set(sections["processors"])
    assert {"file", "debug"} <= set(sections["exporters"])
    assert {"health_check", "debug_api"} <= set(sections["extensions"])


# Over BASE_CONFIG: a file exporter in the wrong place (RUN_OVERLAY moves it) and a debug_api
# token with `$$` in it.
RUN_BASE = pipeline_overlay(file_exporter("wrong/spans.jsonl")) + """
extensions:
  debug_api:
    auth:
      token: "pa$$word"
"""

RUN_OVERLAY = """
exporters:
  file:
    path: ${env:SPANS_DIR}/${SPANS_FILE:-spans.jsonl}
"""


def test_running_daemon_uses_merged_and_expanded_config(tmp_path):
    """What validate promises is what `run` does: spans land where the overlay's expanded path says,
    and `$$` in a token is a literal `$`."""
    spans_dir = tmp_path / "from-env"
    (tmp_path / "daemon").mkdir()
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path / "daemon", env={"SPANS_DIR": str(spans_dir)},
                    overlay=[RUN_BASE, RUN_OVERLAY])
    with daemon:
        document = {"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "merged",
            "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns())}]}]}]}
        response = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", json=document, timeout=10)
        assert response.status_code == 200
        target = spans_dir / "spans.jsonl"
        wait_until(lambda: target.exists() and b"eee19b7ec3c1b174" in target.read_bytes(), timeout=10,
                   message=f"the span in {target}")
        assert not (daemon.dir / "wrong").exists()
        debug = f"http://127.0.0.1:{daemon.ports['debug']}/debug/health"
        assert requests.get(debug, headers={"Authorization": "Bearer pa$word"}, timeout=5).status_code == 200
        assert requests.get(debug, headers={"Authorization": "Bearer pa$$word"}, timeout=5).status_code == 401
