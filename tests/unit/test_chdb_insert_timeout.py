"""A chdb insert whose attempt times out just as the insert completes is not written again.

The exporter helper bounds each attempt by `timeout` and retries; the chdb exporter keeps the
insert that is still running so that the retry awaits it instead of inserting the rows a
second time. The race reproduced here: the timeout (a cancellation) arrives in the same pass
of the event loop as the insert's completion. The writer thread is replaced by an executor
that runs the insert at once (TEST CODE): only that makes the two arrive together every time.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import exporters.chdb as chdb_exporter
from exporters.chdb import ChdbConfig, ChdbExporter
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.pdata.traces import Traces
from testkit.consumers import spans


def recent(count: int) -> Traces:
    """`count` spans that ended just now (the table's TTL drops rows from 1970 at once)."""
    batch = spans(count)
    for span in batch.message.resource_spans[0].scope_spans[0].spans:
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 5
    batch.mark_changed()
    return batch


class AtOnce(concurrent.futures.Executor):
    """Runs each job in the caller's thread: its completion is queued on the loop at once."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.fixture
async def exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = ChdbExporter(Settings.make(Kind.EXPORTER, ComponentID("chdb", "race"), Signal.TRACES),
                        ChdbConfig(path=str(tmp_path / "chdb")))
    await made.start(None)
    assert made.store is not None
    monkeypatch.setattr(made.store, "pool", AtOnce())
    try:
        yield made
    finally:
        await made.shutdown(time.monotonic() + 10)


async def test_a_timeout_that_meets_the_completion_does_not_insert_twice(exporter: ChdbExporter,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real, inserts = chdb_exporter.insert_rows, []

    def counted(conn: Any, spec: Any, columns: list, token: str) -> None:
        inserts.append(len(columns[0]))
        real(conn, spec, columns, token)

    monkeypatch.setattr(chdb_exporter, "insert_rows", counted)
    rows = await exporter.prepare(recent(7))
    attempt = asyncio.ensure_future(exporter.insert_rows(rows, 0, 7))
    await asyncio.sleep(0)  # the attempt starts the insert, whose completion is now queued
    attempt.cancel()  # the attempt's timeout, in the same pass as the completion
    with pytest.raises(asyncio.CancelledError):
        await attempt
    await exporter.insert_rows(rows, 0, 7)  # the helper's retry of the same rows
    assert inserts == [7]
    assert exporter.store is not None
    stored = exporter.store.conn.query("SELECT count() FROM otel.otel_traces", "CSV").bytes()
    assert int(stored) == 7
