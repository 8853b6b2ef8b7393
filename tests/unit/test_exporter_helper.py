"""The exporter helper in process (exporters/helper/queued.py, backoff.py) on a manual clock:
queue full, retries on the backoff schedule, `max_elapsed_time`, permanent errors, the
per-request timeout and the shutdown drain.

`Scripted` is a QueuedExporter whose `send` follows a script of outcomes (TEST CODE): a
destination that fails on cue at a known instant is a fault no real one shows on demand.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from exporters.helper.backoff import Backoff
from exporters.helper.queued import QueuedExporter
from exporters.helper.settings import ExporterHelperConfig, RetrySettings
from pipeline.clock import ManualClock, settle
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.errors import PermanentError, Refused, RetryableError
from pipeline.host import Host
from testkit.consumers import sample, span_ids, spans, unique


class Scripted(QueuedExporter):
    """Sends by the script: each attempt pops the next outcome (an exception to raise, or None
    to succeed; an empty script succeeds). While `gate` is closed an attempt waits there."""

    def __init__(self, settings: Settings, config: ExporterHelperConfig, script: list[Any]) -> None:
        super().__init__(settings, config)
        self.script = list(script)
        self.attempts: list[float] = []
        self.delivered: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, batch: Any) -> None:
        self.attempts.append(self.clock.monotonic() - START)
        await self.gate.wait()
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.delivered.extend(span_ids(batch))


START = 1_000.0
NO_JITTER = {"initial_interval": "1s", "multiplier": 2, "max_interval": "4s", "randomization_factor": 0}


async def exporter(clock: ManualClock, script: list[Any] = (), *, queue: dict[str, Any] | None = None,
                   retry: dict[str, Any] | None = None, timeout: str = "5s") -> Scripted:
    settings = Settings.make(Kind.EXPORTER, ComponentID("scripted", unique("core")), Signal.TRACES)
    settings.clock = clock
    config = ExporterHelperConfig.model_validate({
        "sending_queue": {"num_consumers": 1, **(queue or {})},
        "retry_on_failure": {**NO_JITTER, **(retry or {})}, "timeout": timeout})
    out = Scripted(settings, config, list(script))
    await out.start(Host())
    return out


def failed(out: Scripted, error_type: str) -> float:
    return sample("otelcol_exporter_send_failed_spans_total", exporter=str(out.id), error_type=error_type)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


# -- backoff ---------------------------------------------------------------------------------------

def test_backoff_grows_by_the_multiplier_up_to_max_interval() -> None:
    backoff = Backoff(RetrySettings.model_validate(NO_JITTER))
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_the_randomization_factor() -> None:
    settings = RetrySettings.model_validate({**NO_JITTER, "randomization_factor": 0.5})
    backoff = Backoff(settings, random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    nominal = [1.0, 2.0] + [4.0] * 198
    assert all(0.5 * n <= d <= 1.5 * n for d, n in zip(delays, nominal))
    assert len(set(delays)) > 150  # jittered, not a fixed schedule
    assert Backoff(settings, random.Random(7)).next_delay() == delays[0]  # seeded: reproducible


def test_a_longer_server_hint_wins_and_a_shorter_one_does_not_shorten_the_wait() -> None:
    backoff = Backoff(RetrySettings.model_validate(NO_JITTER))
    assert backoff.next_delay(server_hint=6.0) == 6.0
    assert backoff.next_delay(server_hint=0.1) == 2.0


# -- the queued exporter -----------------------------------------------------------------------------

async def test_retryable_failures_are_retried_on_the_backoff_schedule(clock: ManualClock) -> None:
    out = await exporter(clock, [RetryableError("down")] * 4, retry={"max_elapsed_time": 0})
    batch = spans(3)
    await out.consume(batch)
    await clock.advance(60)
    assert out.attempts == [0.0, 1.0, 3.0, 7.0, 11.0]  # waits of 1, 2, 4, 4 s
    assert out.delivered == span_ids(batch)
    assert sample("agentdbg_exporter_retried_requests_total", exporter=str(out.id)) == 4
    assert sample("otelcol_exporter_sent_spans_total", exporter=str(out.id)) == 3
    await out.shutdown()


async def test_the_server_hint_delays_the_retry(clock: ManualClock) -> None:
    out = await exporter(clock, [RetryableError("busy", retry_after=6.0)])
    await out.consume(spans(1))
    await clock.advance(20)
    assert out.attempts == [0.0, 6.0]
    await out.shutdown()


async def test_retries_stop_at_max_elapsed_time_and_the_batch_is_counted_as_failed(clock: ManualClock) -> None:
    out = await exporter(clock, [RetryableError("down")] * 100, retry={"max_elapsed_time": "10s"})
    await out.consume(spans(5))
    await clock.advance(60)
    assert out.attempts == [0.0, 1.0, 3.0, 7.0]  # the next wait (4 s) would end past 10 s
    assert failed(out, "retries_exhausted") == 5 and out.delivered == []
    assert out.queued == 0  # the queue moves on
    await out.shutdown()


async def test_a_permanent_error_is_not_retried_and_counted_under_its_type(clock: ManualClock) -> None:
    out = await exporter(clock, [PermanentError("bad", error_type="invalid_data")])
    await out.consume(spans(2))
    await clock.advance(60)
    assert out.attempts == [0.0] and failed(out, "invalid_data") == 2
    await out.shutdown()


async def test_an_attempt_that_hangs_times_out_on_the_clock_and_is_retried(clock: ManualClock) -> None:
    out = await exporter(clock, timeout="5s")
    out.gate.clear()
    await out.consume(spans(1))
    await clock.advance(5)
    assert out.attempts == [0.0]
    out.gate.set()
    await clock.advance(1)  # timed out at 5 s, first backoff 1 s
    assert out.attempts == [0.0, 6.0] and len(out.delivered) == 1
    await out.shutdown()


async def test_a_full_queue_refuses_retryably_and_loses_nothing_it_took(clock: ManualClock) -> None:
    out = await exporter(clock, queue={"queue_size": 2})
    out.gate.clear()  # the destination hangs: one batch in flight, two queued
    taken = [spans(1), spans(1), spans(1)]
    for batch in taken:
        await out.consume(batch)
        await settle()
    refused = spans(4)
    with pytest.raises(Refused, match="sending queue is full") as error:
        await out.consume(refused)
    assert error.value.retry_after >= 1.0
    assert sample("otelcol_exporter_enqueue_failed_spans_total", exporter=str(out.id)) == 4
    out.gate.set()
    await settle()
    assert out.delivered == [i for batch in taken for i in span_ids(batch)]
    await out.consume(refused)  # room again
    await settle()
    assert out.delivered[-4:] == span_ids(refused)
    await out.shutdown()


async def test_block_on_overflow_waits_for_room_instead_of_refusing(clock: ManualClock) -> None:
    out = await exporter(clock, queue={"queue_size": 1, "block_on_overflow": True})
    out.gate.clear()
    for _ in range(2):
        await out.consume(spans(1))
        await settle()
    blocked = asyncio.create_task(out.consume(spans(1)))
    await settle()
    assert not blocked.done()
    out.gate.set()
    await settle()
    assert blocked.done() and len(out.delivered) == 3
    await out.shutdown()


async def test_shutdown_drains_the_queue(clock: ManualClock) -> None:
    out = await exporter(clock, [RetryableError("down")])
    batches = [spans(2) for _ in range(3)]
    for batch in batches:
        await out.consume(batch)
    stopping = asyncio.create_task(out.shutdown(deadline=clock.monotonic() + 30))
    await clock.advance(1)  # the first batch's retry
    await stopping
    assert out.delivered == [i for batch in batches for i in span_ids(batch)]
    with pytest.raises(Refused, match="shutting down"):
        await out.consume(spans(1))


async def test_what_is_left_at_the_shutdown_deadline_is_counted_as_failed(clock: ManualClock) -> None:
    out = await exporter(clock)
    out.gate.clear()
    for size in (1, 2, 3):
        await out.consume(spans(size))
        await settle()
    stopping = asyncio.create_task(out.shutdown(deadline=clock.monotonic() + 2))
    await clock.advance(1.5)
    assert not stopping.done()
    await clock.advance(0.5)
    await stopping
    assert failed(out, "shutdown") == 6 and out.delivered == []  # in flight (1) and queued (2 + 3)


async def test_without_a_queue_the_outcome_goes_back_to_the_caller(clock: ManualClock) -> None:
    out = await exporter(clock, [RetryableError("down", retry_after=3.0), PermanentError("bad")],
                         queue={"enabled": False})
    with pytest.raises(Refused) as refused:
        await out.consume(spans(1))
    assert refused.value.retry_after == 3.0
    with pytest.raises(PermanentError):
        await out.consume(spans(2))
    assert failed(out, "permanent") == 2
    batch = spans(1)
    await out.consume(batch)
    assert out.delivered == span_ids(batch)
    await out.shutdown()
