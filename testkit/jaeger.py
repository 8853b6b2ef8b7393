"""Jaeger v2 for tests: the real OTLP backend the `otlp` and `otlphttp` exporters send to.

Jaeger v2 is an OpenTelemetry-Collector build. `Jaeger(binary, workdir).start()` writes it a
config with an `otlp` receiver (gRPC and HTTP) on free 127.0.0.1 ports, straight into the
`jaeger_storage_exporter` (no batch processor: a span is queryable as soon as it is acked),
a `jaeger_storage` extension with the in-memory backend and a `jaeger_query` extension on
free ports; it waits until the query API answers and the OTLP ports take connections.
`make test` builds the binary (`JAEGER_BINARY`) from the Go module proxy.

Reading back goes through Jaeger's own query API, `/api/v3` (OTLP/JSON in, the
`ExportTraceServiceRequest` shape out), with `raw_traces=true` so Jaeger's adjusters (clock
skew, span-id dedupe, sorting) leave the stored spans as they were sent: every copy of a
span that arrived is returned. `traces(trace_ids)` reads traces by id, `service_spans(name)`
every trace of one service; one Jaeger serves a whole test run, so tests name their
services and pick fresh trace ids. `pause()` / `resume()` freeze and thaw it (SIGSTOP /
SIGCONT): what an unreachable backend looks like to an exporter, with what it stored kept.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

import orjson
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlp_json
from testkit.harness import ROOT, free_port, wait_until
from testkit.process import Pausable

JAEGER_VERSION = "v1.76.0"  # also in the Makefile's JAEGER_VERSION
JAEGER_BINARY = ROOT / ".cache" / "jaeger" / f"jaeger-{JAEGER_VERSION}"
MAX_TRACES = 100_000  # the memory store's ring: well above what one test run stores

CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {level: none}
    logs: {level: info}
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory: {max_traces: %(max_traces)d}
  jaeger_query:
    storage: {traces: memstore}
    enable_tracing: false  # on by default: it would send Jaeger's own spans to 127.0.0.1:4317
    http: {endpoint: "127.0.0.1:%(query_http)d"}
    grpc: {endpoint: "127.0.0.1:%(query_grpc)d"}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%(grpc)d", max_recv_msg_size_mib: 64}
      http: {endpoint: "127.0.0.1:%(http)d"}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class Jaeger(Pausable):
    def __init__(self, binary: Path | str, workdir: Path) -> None:
        self.binary = str(binary)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "jaeger.yaml"
        self.log_path = self.dir / "jaeger.log"
        self.proc: subprocess.Popen | None = None
        # Picked now, so an exporter can be pointed at a Jaeger that is not up yet.
        self.ports = self._free_ports()

    @staticmethod
    def _free_ports() -> dict[str, int]:
        return {name: free_port() for name in ("grpc", "http", "query_http", "query_grpc")}

    # -- where the exporters point -------------------------------------------------------------
    @property
    def grpc_endpoint(self) -> str:
        """host:port of the OTLP/gRPC receiver (an `otlp` exporter's `endpoint`)."""
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        """Base URL of the OTLP/HTTP receiver (an `otlphttp` exporter's `endpoint`)."""
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query_http']}"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0, attempts: int = 3) -> "Jaeger":
        """Start and wait until it serves; new ports are picked if one was taken meanwhile."""
        for attempt in range(attempts):
            if attempt:
                self.ports = self._free_ports()
            self.config_path.write_text(CONFIG % {**self.ports, "max_traces": MAX_TRACES})
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([self.binary, "--config", str(self.config_path)],
                                         stdout=self._log, stderr=subprocess.STDOUT)
            try:
                wait_until(self.ready, timeout=timeout, interval=0.1, message=f"Jaeger ready (log: {self.log_path})")
                return self
            except AssertionError:
                self.stop()
                lost_race = "address already in use" in self.log()[logged:]
                if not lost_race or attempt == attempts - 1:
                    raise
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"Jaeger exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        if not all(_listening(self.ports[name]) for name in ("grpc", "http")):
            return False
        try:
            return requests.get(f"{self.query_url}/api/v3/services", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "Jaeger":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading back ----------------------------------------------------------------------------
    def trace(self, trace_id: str) -> ExportTraceServiceRequest | None:
        """Every span Jaeger holds of one trace (hex id), as stored; None if it has none."""
        answer = requests.get(f"{self.query_url}/api/v3/traces/{trace_id}", params={"raw_traces": "true"},
                              timeout=30)
        return _traces_answer(answer)

    def traces(self, trace_ids: Iterable[str]) -> list[ExportTraceServiceRequest]:
        """The stored spans of each trace of `trace_ids` that Jaeger has."""
        found = (self.trace(trace_id) for trace_id in sorted(set(trace_ids)))
        return [request for request in found if request is not None]

    def service_spans(self, service: str) -> list[ExportTraceServiceRequest]:
        """Every stored trace with a span of `service` (all of each such trace's spans)."""
        params = {"query.service_name": service, "query.start_time_min": "2000-01-01T00:00:00Z",
                  "query.start_time_max": _rfc3339(time.time() + 86400), "query.num_traces": str(MAX_TRACES),
                  "query.raw_traces": "true"}
        answer = requests.get(f"{self.query_url}/api/v3/traces", params=params, timeout=60)
        request = _traces_answer(answer)
        return [request] if request is not None else []


def _traces_answer(answer: requests.Response) -> ExportTraceServiceRequest | None:
    """The `result` of a /api/v3 traces answer (OTLP/JSON TracesData) as a request; None on 404."""
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    result = orjson.loads(answer.content).get("result", {})
    return otlp_json.decode(orjson.dumps(result), ExportTraceServiceRequest)


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
