"""Row isolation (exporters/helper/isolate.py) against a recording, refusing fake sink.

The sink is a fake on purpose: it stands for a table that refuses any insert holding one of
a set of bad rows, and records what it stored, so the logic's promises are checked exactly:
every good row stored once, only the bad rows refused, few inserts, a retryable failure
resumed without writing a stored row again, a statement error refusing what is left.
"""
from __future__ import annotations

import asyncio
import math

import pytest

from exporters.helper import ExporterHelperConfig
from exporters.helper.dead_letter import DeadLetters
from exporters.helper.isolate import IsolatingExporter, RowIsolation, run
from pipeline.pdata import batch_codec
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import InvalidData, PermanentError, RetryableError
from pipeline.pdata.events import Events
from pipeline.telemetry import metrics


class Sink:
    """Stores ranges of rows; refuses (InvalidData) any range holding a bad row."""

    def __init__(self, bad: set[int], fail_at: dict[int, Exception] | None = None) -> None:
        self.bad = bad
        self.fail_at = fail_at or {}  # insert number -> error raised instead
        self.stored: list[int] = []
        self.calls = 0

    async def insert(self, start: int, stop: int) -> None:
        self.calls += 1
        error = self.fail_at.pop(self.calls, None)
        if error is not None:
            raise error
        if self.bad & set(range(start, stop)):
            raise InvalidData("value out of range", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE")
        self.stored.extend(range(start, stop))


def _run(plan: RowIsolation, sink: Sink) -> None:
    asyncio.run(run(plan, sink.insert))


@pytest.mark.parametrize("rows, bad", [(1, set()), (1, {0}), (10, {3}), (1000, {0, 999}),
                                       (1000, {5, 6, 7, 500}), (64, set(range(64)))])
def test_every_good_row_is_stored_once_and_only_bad_rows_are_refused(rows, bad):
    plan, sink = RowIsolation(rows), Sink(bad)
    _run(plan, sink)
    assert sorted(sink.stored) == sorted(set(range(rows)) - bad)  # once each: no duplicates
    assert plan.refused_rows() == sorted(bad)
    assert plan.done and plan.stored == rows - len(bad)
    assert sink.calls == plan.inserts <= 2 * len(bad) * max(1, math.ceil(math.log2(rows))) + 1
    failures = plan.failures("dead/letter.batch")
    assert [(f.rejected, f.error_type) for f in failures] == ([(len(bad), "invalid_data")] if bad else [])
    assert all("value out of range" in f.reason and "dead/letter.batch" in f.reason for f in failures)


def test_a_good_batch_costs_one_insert():
    plan, sink = RowIsolation(8192), Sink(set())
    _run(plan, sink)
    assert sink.calls == 1 and plan.failures() == []


def test_a_retryable_failure_resumes_without_storing_a_row_twice():
    sink = Sink({60}, fail_at={3: RetryableError("engine busy")})  # after rows 0..49 went in
    plan = RowIsolation(100)
    with pytest.raises(RetryableError):
        _run(plan, sink)
    stored_before = list(sink.stored)
    assert stored_before and plan.unsettled == 100 - len(stored_before)
    _run(plan, sink)  # the helper's next attempt on the same batch
    assert sorted(sink.stored) == [row for row in range(100) if row != 60]
    assert plan.refused_rows() == [60]


def test_a_statement_error_refuses_every_row_left_without_more_inserts():
    sink = Sink({70}, fail_at={4: PermanentError("no such column", error_type="NO_SUCH_COLUMN_IN_TABLE")})
    plan = RowIsolation(100)
    _run(plan, sink)
    calls = sink.calls
    assert plan.done and calls == 4
    stored = set(sink.stored)
    refused = plan.refusals["NO_SUCH_COLUMN_IN_TABLE"].rows
    assert stored.isdisjoint(refused) and stored | set(refused) == set(range(100))
    assert "invalid_data" not in plan.refusals  # row 70 was never reached by a bisecting insert


def test_empty_batch_needs_no_insert():
    plan, sink = RowIsolation(0), Sink(set())
    _run(plan, sink)
    assert sink.calls == 0 and plan.done


class RowsExporter(IsolatingExporter):
    """An IsolatingExporter over a Sink: rows are plain row numbers, a batch is `Rows(n)`."""

    def __init__(self, name: str, sink: Sink, dead_letter: str) -> None:
        config = ExporterHelperConfig(retry_on_failure={"enabled": False}, timeout=0)
        super().__init__(Settings.make(Kind.EXPORTER, ComponentID("rows", name), Signal.TRACES), config)
        self.sink = sink
        self.dead_letters = DeadLetters(dead_letter)

    async def send(self, batch):
        return await self.send_rows(batch)

    async def prepare(self, batch):
        return list(range(batch.item_count))

    async def insert_rows(self, rows, start, stop):
        await self.sink.insert(start, stop)

    def refused_batch(self, batch, indices):
        return Events([{"row": index} for index in indices])


class Rows:
    def __init__(self, count: int) -> None:
        self.item_count = count


def _sample(name: str, metric: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, {"exporter": f"rows/{name}", **labels}) or 0.0


def test_a_batch_given_up_on_counts_its_stored_rows_as_sent_and_keeps_its_refused_rows(tmp_path):
    """Retries disabled: the first retryable failure ends the batch after part of it was stored."""

    class FailLate(Sink):
        async def insert(self, start: int, stop: int) -> None:
            if start >= 50:
                raise RetryableError("engine gone")
            await super().insert(start, stop)

    sink = FailLate({0})

    async def scenario() -> None:
        exporter = RowsExporter("late", sink, str(tmp_path / "dead"))
        await exporter.start(None)
        await exporter.consume(Rows(100))
        await exporter.shutdown(None)  # drains the queue: the one batch is settled

    asyncio.run(scenario())
    assert sorted(sink.stored) == list(range(1, 50))
    assert _sample("late", "otelcol_exporter_sent_spans_total") == 49
    assert _sample("late", "otelcol_exporter_send_failed_spans_total", error_type="invalid_data") == 1
    assert _sample("late", "otelcol_exporter_send_failed_spans_total", error_type="unavailable") == 50
    letters = list((tmp_path / "dead").glob("*.batch"))
    assert len(letters) == 1 and batch_codec.decode(letters[0].read_bytes()).documents == [{"row": 0}]


def test_a_batch_whose_rows_cannot_be_built_is_refused_whole_and_kept(tmp_path):
    class Unbuildable(RowsExporter):
        async def prepare(self, batch):
            raise ValueError("no column for this")

        def refused_batch(self, batch, indices):
            raise AssertionError("the whole batch is kept, not a selection")

    async def scenario() -> None:
        exporter = Unbuildable("unbuildable", Sink(set()), str(tmp_path / "dead"))
        exporter.dead_letters = DeadLetters(tmp_path / "dead")
        await exporter.start(None)
        await exporter.consume(Events([{"id": "a"}, {"id": "b"}]))
        await exporter.shutdown(None)

    asyncio.run(scenario())
    assert _sample("unbuildable", "otelcol_exporter_send_failed_spans_total", error_type="invalid_data") == 2
    assert _sample("unbuildable", "agentdbg_exporter_retried_requests_total") == 0
    letters = list((tmp_path / "dead").glob("*.batch"))
    assert [batch_codec.decode(path.read_bytes()).documents for path in letters] == [[{"id": "a"}, {"id": "b"}]]
    assert "no column for this" in letters[0].with_suffix(".reason").read_text()
