"""chdb: a batch stored before a crash and sent again after the restart is stored once.

The persistent queue removes a batch's file only after its insert returned, and the batch
processor's write-ahead log replays what it had handed on, so a crash between the two sends a
stored batch again at the next start. Here the "restart" is a second exporter on the same data
directory, given the batch as the queue stores and recovers it (pipeline/pdata/batch_codec.py).
Its insert carries the same deduplication token, and the engine stores nothing the second time;
a batch with other spans is stored as usual (the token is the content, not a counter).
"""
from __future__ import annotations

import time
from pathlib import Path

from exporters.chdb import ChdbConfig, ChdbExporter
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata import batch_codec
from pipeline.pdata.traces import Traces
from testkit.consumers import spans


def _recent(count: int, name: str) -> Traces:
    batch = spans(count)
    for span in batch.message.resource_spans[0].scope_spans[0].spans:
        span.name = name
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 5
    batch.mark_changed()
    return batch


async def _store(path: Path, batch: Traces) -> int:
    """Start an exporter on `path`, store `batch` through its row path, stop; the spans stored then."""
    exporter = ChdbExporter(Settings.make(Kind.EXPORTER, ComponentID("chdb", "replay"), Signal.TRACES),
                            ChdbConfig(path=str(path)))
    await exporter.start(None)
    try:
        assert await exporter.send_rows(batch) == []
        assert exporter.store is not None
        return int(exporter.store.conn.query("SELECT count() FROM otel.otel_traces", "CSV").bytes())
    finally:
        await exporter.shutdown(time.monotonic() + 10)


async def test_a_batch_replayed_after_a_restart_is_stored_once(tmp_path: Path) -> None:
    batch = _recent(7, "before-the-crash")
    assert await _store(tmp_path / "chdb", batch) == 7
    replayed = batch_codec.decode(batch_codec.encode(batch))  # what the queue gives back at the next start
    assert isinstance(replayed, Traces)
    assert await _store(tmp_path / "chdb", replayed) == 7
    assert await _store(tmp_path / "chdb", _recent(7, "after-the-restart")) == 14
