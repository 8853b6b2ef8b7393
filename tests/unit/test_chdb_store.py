"""The chdb exporter in-process: a timed-out insert is not written twice; directory and engine rules."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import exporters.chdb as chdb_exporter
from exporters.chdb import ChdbConfig, ChdbExporter
from pipeline.chdb_engine import ChdbStore, DirectoryInUse, lock_directory, unlock_directory
from pipeline.clock import ManualClock
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.telemetry import metrics
from pipeline.pdata.traces import Traces


def _batch(spans: int, seed: int) -> Traces:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope.spans.add(trace_id=seed.to_bytes(16, "big"), span_id=(seed * 1000 + i + 1).to_bytes(8, "big"),
                        name="op", start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 5)
    return Traces.from_wire(request.SerializeToString())


def _exporter(path: Path, name: str = "", **overrides: object) -> ChdbExporter:
    config = ChdbConfig(path=str(path), **overrides)
    return ChdbExporter(Settings.make(Kind.EXPORTER, ComponentID("chdb", name), Signal.TRACES), config)


def _count(exporter: ChdbExporter) -> int:
    assert exporter.store is not None
    return int(exporter.store.conn.query("SELECT count() FROM otel.otel_traces", "CSV").bytes())


async def _drain(exporter: ChdbExporter, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (exporter.queued or exporter._in_flight_items) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_timed_out_insert_is_awaited_not_repeated(tmp_path, monkeypatch):
    real = chdb_exporter.insert_rows
    calls: list[int] = []
    started, release = threading.Event(), threading.Event()

    def slow_insert(conn, spec, columns, token):
        calls.append(len(columns[0]))
        started.set()
        release.wait(30)  # held until the helper has timed out and retried, on the manual clock
        real(conn, spec, columns, token)

    monkeypatch.setattr(chdb_exporter, "insert_rows", slow_insert)
    clock = ManualClock()
    settings = Settings.make(Kind.EXPORTER, ComponentID("chdb", "slow"), Signal.TRACES)
    settings.clock = clock
    config = ChdbConfig(path=str(tmp_path / "chdb"), timeout="100ms", sending_queue={"num_consumers": 4},
                        retry_on_failure={"initial_interval": "50ms", "max_interval": "100ms"})
    exporter = ChdbExporter(settings, config)
    retried = {"exporter": "chdb/slow"}
    before = metrics.REGISTRY.get_sample_value("agentdbg_exporter_retried_requests_total", retried) or 0
    await exporter.start(None)
    try:
        await exporter.consume(_batch(7, 1))
        await exporter.consume(_batch(3, 2))
        assert await asyncio.to_thread(started.wait, 10)  # the first insert runs in the writer thread
        await clock.advance(1.0)  # attempts time out at 100 ms and are retried while the insert runs
        after = metrics.REGISTRY.get_sample_value("agentdbg_exporter_retried_requests_total", retried)
        assert after - before >= 2 and calls == [7]
        release.set()
        deadline = time.monotonic() + 20
        while (exporter.queued or exporter._in_flight_items) and time.monotonic() < deadline:
            await clock.advance(0.05)  # retries (each awaits the running insert) and the next batch
            await asyncio.sleep(0.01)  # the writer thread's work, in real time
        assert calls == [7, 3]  # each batch written once, in order, despite the retries
        assert _count(exporter) == 10
        assert exporter.config.sending_queue.num_consumers == 1
    finally:
        await exporter.shutdown(time.monotonic() + 10)


async def test_restart_keeps_data_and_appends(tmp_path):
    for round_ in (1, 2):
        exporter = _exporter(tmp_path / "chdb")
        await exporter.start(None)
        try:
            await exporter.consume(_batch(5, round_))
            await _drain(exporter)
            assert _count(exporter) == 5 * round_
        finally:
            await exporter.shutdown(time.monotonic() + 10)
    assert not (tmp_path / "chdb" / "agentdbg.lock").read_text()  # released: no pid left behind


async def test_second_exporter_on_the_same_path_shares_the_engine(tmp_path):
    first, second = _exporter(tmp_path / "chdb"), _exporter(tmp_path / "chdb", name="reloaded", ttl="30d")
    await first.start(None)
    await second.start(None)
    try:
        assert first.store is second.store and first.store.refs == 2
        await second.consume(_batch(2, 3))
        await _drain(second)
    finally:
        await first.shutdown(time.monotonic() + 10)
    assert second.store is not None and _count(second) == 2  # still open for the one left
    await second.shutdown(time.monotonic() + 10)
    assert not ChdbStore._open


async def test_one_directory_per_process(tmp_path):
    exporter = _exporter(tmp_path / "a")
    await exporter.start(None)
    try:
        with pytest.raises(RuntimeError, match="one data directory per process"):
            await _exporter(tmp_path / "b").start(None)
    finally:
        await exporter.shutdown(time.monotonic() + 10)


def test_directory_lock_names_the_holder(tmp_path):
    held = lock_directory(str(tmp_path))
    try:
        with pytest.raises(DirectoryInUse) as caught:
            lock_directory(str(tmp_path))
        import os

        assert caught.value.pid == str(os.getpid()) and str(tmp_path) in str(caught.value)
    finally:
        unlock_directory(held)
    unlock_directory(lock_directory(str(tmp_path)))  # free again
