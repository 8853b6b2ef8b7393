"""Acceptance 4, part 2: SIGHUP reloads and SIGTERM drains, as an operator does them under load.

- SIGHUP with a broken file: every error is logged, the old graph keeps serving.
- SIGHUP with good changed files, while a client posts continuously (retrying 503s): each
  accepted span is in the output of every pipeline that was active when it was accepted,
  and a removed exporter stops getting data.
- SIGTERM: the daemon stops taking data, flushes what it accepted (here: spans still held
  by a batch processor with a long timeout), and exits 0.
"""
from __future__ import annotations

import os
import signal
import struct
import threading
import time
from dataclasses import dataclass, field

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.harness import BASE_CONFIG, Daemon, batch_processor, file_exporter, pipeline_overlay, wait_until
from testkit.otlp_spans import read_json_lines, span_ids


def config(exporters: list[str], batch_timeout: str = "50ms") -> str:
    """The overlay over BASE_CONFIG: otlp → batch → one file exporter per name, writing `{dir}/<name>.jsonl`."""
    files = "".join(file_exporter(f"{name.replace('/', '-')}.jsonl", name=name) for name in exporters)
    return pipeline_overlay(files, batch_processor(batch_timeout))


def written(daemon: Daemon, exporter: str) -> list[str]:
    """Every span id the file exporter `exporter` wrote (with repeats, if any)."""
    return span_ids(read_json_lines(daemon.dir / f"{exporter.replace('/', '-')}.jsonl"))


@dataclass
class Accepted:
    started: float
    answered: float
    span_ids: list[str]


@dataclass
class Load:
    """A client that posts batches of spans back to back; a 503/429 is retried until accepted."""

    url: str
    spans_per_request: int = 5
    accepted: list[Accepted] = field(default_factory=list)
    refusals: int = 0
    error: BaseException | None = None
    connection_lost: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next_id = int.from_bytes(os.urandom(4), "big") << 32

    def start(self) -> "Load":
        self._thread.start()
        return self

    def stop(self) -> "Load":
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "load thread did not stop"
        if self.error:
            raise self.error
        return self

    def _request(self) -> tuple[bytes, list[str]]:
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        now = time.time_ns()
        ids = []
        for _ in range(self.spans_per_request):
            self._next_id += 1
            span_id = struct.pack(">Q", self._next_id)
            scope.spans.add(trace_id=os.urandom(16), span_id=span_id, name="load",
                            start_time_unix_nano=now, end_time_unix_nano=now + 1)
            ids.append(span_id.hex())
        return request.SerializeToString(), ids

    def _run(self) -> None:
        session = requests.Session()
        try:
            while not self._stop.is_set():
                body, ids = self._request()
                started = time.monotonic()
                while True:
                    try:
                        response = session.post(self.url, data=body, timeout=10,
                                                headers={"Content-Type": "application/x-protobuf"})
                    except requests.ConnectionError:
                        self.connection_lost = True  # the daemon stopped listening (SIGTERM)
                        return
                    if response.status_code == 200:
                        self.accepted.append(Accepted(started, time.monotonic(), ids))
                        break
                    assert response.status_code in (429, 503), (response.status_code, response.content)
                    assert "Retry-After" in response.headers
                    self.refusals += 1
                    time.sleep(0.05)
                time.sleep(0.005)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def ids(self, accepted: list[Accepted] | None = None) -> set[str]:
        return {span_id for a in (self.accepted if accepted is None else accepted) for span_id in a.span_ids}


def reloads(daemon: Daemon, message: str = "configuration reloaded") -> int:
    return daemon.log().count(message)


def hup(daemon: Daemon, new_config: str) -> tuple[float, float]:
    """Write the new config, SIGHUP, wait until the daemon says it reloaded; (sent, applied) times."""
    before = reloads(daemon)
    daemon.write_overlay(new_config)
    sent = time.monotonic()
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: reloads(daemon) > before, timeout=30, message="the reload to be applied")
    return sent, time.monotonic()


def test_sighup_with_a_broken_file_keeps_the_old_graph(tmp_path):
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=config(["file/a"]))
    with daemon:
        load = Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces").start()
        wait_until(lambda: len(load.accepted) >= 5, timeout=10, message="load before the reload")
        broken = config(["file/a"]).replace("timeout: 50ms", "timeout: 50 parsecs").replace(
            "processors: [batch]", "processors: [batch, nothere]")
        daemon.write_overlay(broken)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: reloads(daemon, "keeping the running pipelines") >= 2, timeout=15,
                   message="the reload errors in the log")
        count = len(load.accepted)
        wait_until(lambda: len(load.accepted) >= count + 5, timeout=10, message="load after the rejected reload")
        load.stop()
        log = daemon.log()
        assert "processors::batch::timeout" in log and "50 parsecs" in log
        assert 'references processor \\"nothere\\" which is not configured' in log or \
            'references processor "nothere" which is not configured' in log
        assert reloads(daemon) == 0
        assert daemon.metric("agentdbg_config_reloads_total", result="rejected") == 1
        health = requests.get(f"http://127.0.0.1:{daemon.ports['health']}/", timeout=5)
        assert health.status_code == 200
        wanted = load.ids()
        wait_until(lambda: wanted <= set(written(daemon, "file/a")), timeout=10, message="every span in file/a")
    assert daemon.proc.returncode == 0


def test_sighup_switches_pipelines_under_load_without_losing_spans(tmp_path):
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=config(["file/a"]))
    with daemon:
        load = Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces").start()
        wait_until(lambda: len(load.accepted) >= 10, timeout=10, message="load before the first reload")
        # 1: add a second file exporter (file/a is unchanged and keeps its queue).
        hup1_sent, hup1_applied = hup(daemon, config(["file/a", "file/b"]))
        count = len(load.accepted)
        wait_until(lambda: len(load.accepted) >= count + 10, timeout=10, message="load between the reloads")
        # 2: drop file/a and change the batch processor: file/a must be drained and then left alone.
        hup2_sent, hup2_applied = hup(daemon, config(["file/b"], batch_timeout="30ms"))
        count = len(load.accepted)
        wait_until(lambda: len(load.accepted) >= count + 10, timeout=10, message="load after the second reload")
        load.stop()
        # SIGTERM: whatever is still in the batch processor or the queues must be written too.
        assert daemon.stop() == 0
    accepted = load.accepted
    in_a, in_b = written(daemon, "file/a"), written(daemon, "file/b")
    only_a = [a for a in accepted if a.answered < hup1_sent]             # only file/a was active
    a_and_b = [a for a in accepted if hup1_applied < a.started and a.answered < hup2_sent]
    only_b = [a for a in accepted if a.started > hup2_applied]
    assert only_a and a_and_b and only_b, (len(only_a), len(a_and_b), len(only_b))
    assert load.ids(only_a) <= set(in_a)
    assert load.ids(a_and_b) <= set(in_a) & set(in_b)
    assert load.ids(only_b) <= set(in_b)
    assert not load.ids(only_b) & set(in_a), "file/a still got data after it was removed"
    # Every accepted span is somewhere, and nothing appears that was never accepted.
    assert load.ids() <= set(in_a) | set(in_b)
    assert set(in_a) | set(in_b) <= load.ids()
    assert daemon.log().count("configuration reloaded") == 2
    duplicates = (len(in_a) - len(set(in_a))) + (len(in_b) - len(set(in_b)))
    # Duplicates can only come from a refused-then-retried request (at-least-once); none without refusals.
    assert duplicates == 0 or load.refusals > 0


def test_sigterm_drains_what_was_accepted_and_exits_zero(tmp_path):
    # A batch timeout far longer than the test: the spans are still in the batch processor at
    # SIGTERM, so only the shutdown flush can write them.
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=config(["file/a"], batch_timeout="1h"))
    with daemon:
        load = Load(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces").start()
        wait_until(lambda: len(load.accepted) >= 20, timeout=10, message="some accepted requests")
        assert written(daemon, "file/a") == []  # held by the batch processor
        daemon.signal(signal.SIGTERM)           # while the client keeps posting
        assert daemon.proc.wait(30) == 0, daemon.log()
        load.stop()
    assert load.connection_lost
    out = written(daemon, "file/a")
    assert load.ids() <= set(out), f"{len(load.ids() - set(out))} accepted spans were not written"
    assert len(out) == len(set(out))
    assert "shutdown complete" in daemon.log()
