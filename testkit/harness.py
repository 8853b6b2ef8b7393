"""Test harness: run `agentdbg` as a real subprocess on free loopback ports.

`Daemon(config_text)` writes the YAML, starts the daemon, waits for its health endpoint
and gives the ports; `stop()` sends SIGTERM and returns the exit code. Placeholders in the
YAML (`{grpc}`, `{http}`, `{metrics}`, `{health}`, `{debug}`, `{dir}`) are filled in.

Most tests run `Daemon(BASE_CONFIG, overlay=...)`: BASE_CONFIG has the otlp receiver (gRPC and
HTTP), health_check, debug_api and the metrics address; the overlay (one YAML or a list of
them, merged in order: maps deep-merge, lists are replaced) adds what the test is about.
`pipeline_overlay(exporters, processors)` writes the usual one: a traces pipeline otlp →
processors → exporters, built from `component` / `batch_processor` / `file_exporter` YAML.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import requests

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0  # seconds a daemon may take to report healthy (see Daemon.start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def agentdbg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`agentdbg ARGS` (validate, components, query, ...) as a user runs it, output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


def agentdbg_query(sql: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`agentdbg query [args] SQL` as a user runs it (`--path DIR`, `--snapshot`, `--format ...`)."""
    return agentdbg("query", *args, sql, env=env)


def query_json(sql: str, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    """The rows of `agentdbg query --format json`; fails the test with its stderr if it fails."""
    result = agentdbg_query(sql, "--format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` in Prometheus text `text` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


class Daemon:
    def __init__(self, config: str, workdir: Path | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, overlay: str | Sequence[str] | None = None,
                 source: Path = ROOT) -> None:
        """`overlay`, if given, is a second YAML file merged over `config` (e.g. BASE_CONFIG), or a
        list of them merged in order; the first is `overlay.yaml`, the next `overlay-2.yaml`, ...
        `source` is the checkout whose code runs (another revision's worktree, for a before/after
        benchmark); by default this one."""
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="agentdbg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "config.yaml"
        self._templates = (config, [overlay] if isinstance(overlay, str) else list(overlay or []))
        self._pick_ports()
        overlay_args: list[str] = []
        for number in range(1, len(self._templates[1]) + 1):
            overlay_args += ["--config", str(self._overlay_path(number))]
        self.extra_args = [*overlay_args, *(extra_args or [])]
        self.env = env or {}
        self.source = source
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def _overlay_path(self, number: int) -> Path:
        return self.dir / ("overlay.yaml" if number == 1 else f"overlay-{number}.yaml")

    def _pick_ports(self) -> None:
        """Free ports, written into the config files (again, after a lost race for a port)."""
        self.ports = {name: free_port() for name in ("grpc", "http", "metrics", "health", "debug")}
        config, overlays = self._templates
        self.write_config(config)
        for number, text in enumerate(overlays, 1):
            self._overlay_path(number).write_text(self.fill(text))

    def fill(self, config: str) -> str:
        values = {**{k: f"127.0.0.1:{v}" for k, v in self.ports.items()}, "dir": str(self.dir)}
        for key, value in values.items():
            config = config.replace("{" + key + "}", value)
        return config

    def write_config(self, config: str) -> None:
        self.config_path.write_text(self.fill(config))

    def write_overlay(self, overlay: str) -> None:
        """Replace the (first) overlay file, e.g. before a SIGHUP reload."""
        (self.dir / "overlay.yaml").write_text(self.fill(overlay))

    def validate(self) -> subprocess.CompletedProcess:
        """`agentdbg validate` on this daemon's config files, without running it."""
        return agentdbg("validate", "--config", str(self.config_path), *self.extra_args, env=self.env)

    def start(self, wait: bool = True, attempts: int = 3) -> "Daemon":
        """Start and wait for health. A free port can be taken by another process between
        `free_port()` and the daemon's bind; then new ports are picked and it starts again.
        The wait is generous (START_TIMEOUT) because it is not a measurement: under `-n 4` on
        a loaded 2-core machine a start can take tens of seconds, and a daemon that exits is
        seen at once (`healthy` polls the process every 50 ms)."""
        for attempt in range(attempts):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch()
            if not wait:
                return self
            try:
                wait_until(self.healthy, timeout=START_TIMEOUT, message=f"daemon health (log: {self.log_path})")
                return self
            except AssertionError:
                recent = self.log()[logged:].lower()
                lost_race = "address already in use" in recent or "cannot listen on" in recent
                if not lost_race or attempt == attempts - 1:
                    self.kill()  # a start that failed leaves no daemon behind (no __exit__ runs)
                    self._log.close()
                    raise
                self._log.close()
                self._pick_ports()
        return self

    def _launch(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "--config", str(self.config_path), *self.extra_args],
            cwd=self.source, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def healthy(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.ports['health']}/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metrics_text(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return metric_value(self.metrics_text(), name, **labels)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()


# config/default.yaml's environment variables for its listeners, and the Daemon port each one gets.
DEFAULT_CONFIG_PORTS = {"OTLP_GRPC_ENDPOINT": "grpc", "OTLP_HTTP_ENDPOINT": "http", "HEALTH_ENDPOINT": "health",
                        "DEBUG_ENDPOINT": "debug", "METRICS_ADDRESS": "metrics", "EXPLORER_ENDPOINT": "explorer"}


def default_config_env(daemon: Daemon, data_dir: Path) -> dict[str, str]:
    """The environment that points config/default.yaml (as shipped) at the daemon's free ports and
    at `data_dir`; the explorer gets a free port too (`daemon.ports["explorer"]`)."""
    daemon.ports.setdefault("explorer", free_port())
    return {"AGENTDBG_DATA_DIR": str(data_dir),
            **{f"AGENTDBG_{var}": f"127.0.0.1:{daemon.ports[port]}" for var, port in DEFAULT_CONFIG_PORTS.items()}}


BASE_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
extensions:
  health_check:
    endpoint: {health}
  debug_api:
    endpoint: {debug}
service:
  extensions: [health_check, debug_api]
  telemetry:
    metrics:
      address: {metrics}
"""


def component(name: str, **options: object) -> str:
    """YAML of one component for a `processors:` / `exporters:` section body: `name:` at two
    spaces, then one `key: value` line per option."""
    return "".join([f"  {name}:\n", *(f"    {key}: {value}\n" for key, value in options.items())])


def batch_processor(timeout: str = "50ms", **options: object) -> str:
    return component("batch", timeout=timeout, **options)


def file_exporter(path: str = "spans.jsonl", name: str = "file", **options: object) -> str:
    """A `file` exporter writing `{dir}/<path>` (OTLP/JSON lines unless `format: proto`), flushed every 50 ms."""
    return component(name, path=f"{{dir}}/{path}", flush_interval="50ms", **options)


def pipeline_overlay(exporters: str, processors: str = batch_processor()) -> str:
    """An overlay for BASE_CONFIG: the traces pipeline otlp → `processors` → `exporters`.

    Both are section bodies (each component id at two spaces, as `component` writes them);
    the pipeline names every component of each, in the order given.
    """
    def body(section: str) -> str:
        return section.strip("\n")

    def names(section: str) -> str:
        return ", ".join(re.findall(r"^  (\S+):", section, re.MULTILINE))

    return f"""
processors:
{body(processors)}
exporters:
{body(exporters)}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{names(processors)}]
      exporters: [{names(exporters)}]
"""
