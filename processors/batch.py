"""`batch`: merge incoming batches into larger ones before the exporters.

A batch is sent when it holds `send_batch_size` spans (a trigger, not a cap) or when
`timeout` has passed since its first span arrived; `send_batch_max_size` (0 = none) splits
larger ones. Merging concatenates wire bytes, so nothing is re-serialised.

What it promises when the next stage refuses (a full exporter queue): unlike otelcol, which
drops the batch, it keeps the refused batch and re-offers it (only to the exporters that
refused) until they take it. While it holds such a batch it refuses new data retryably,
so the back-pressure reaches the clients and the memory it holds stays bounded. A
permanent error downstream is counted and logged. On shutdown it flushes, and re-offers
what it holds until the deadline; what is still held then is counted as dropped and logged.

Durability: when an exporter of its pipeline keeps a persistent sending queue
(`sending_queue.storage`), an OK from the receiver must mean "on disk", yet a batch waiting
here to be merged is only in memory. So the processor then keeps a write-ahead log in that
same file_storage extension (sub-directory `<processor id>-<pipeline>`): each incoming
batch is appended to it before `consume` returns, and the log segment of a merged batch is
deleted only once every exporter took the batch (a persistent queue writes it to its own
files before taking it). At start, what an earlier run left in the log is sent first, before
any new data: after a crash a batch that had reached the exporters is sent twice (counted in
`agentdbg_processor_batch_wal_replayed_items_total`), never lost. Batches still held at the
shutdown deadline stay in the log for the next start instead of being dropped. Without a
persistent queue downstream nothing is written.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pydantic import NonNegativeInt, model_validator

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal, StrictConfig
from pipeline.config.units import Duration
from pipeline.contracts import LogSegment, LogStore
from pipeline.errors import PermanentError, Refused
from pipeline.host import Host
from pipeline.pdata.batch import OtlpBatch
from pipeline.telemetry import metrics

RETRY_INTERVAL = 0.5


class BatchConfig(StrictConfig):
    send_batch_size: NonNegativeInt = 8192
    timeout: Duration = 0.2
    send_batch_max_size: NonNegativeInt = 0

    @model_validator(mode="after")
    def _max_not_below_size(self) -> "BatchConfig":
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be greater or equal to send_batch_size")
        return self


@dataclass
class Flight:
    """A merged batch on its way out: the log segments holding its parts, deleted once every
    piece of it was taken (or refused for good) downstream."""

    segments: list[LogSegment]
    pieces: int = 0

    def piece_done(self) -> None:
        self.pieces -= 1
        if self.pieces == 0:
            for segment in self.segments:
                segment.remove()


Held = tuple[OtlpBatch, Consumer, "Flight | None"]


class BatchProcessor(Processor[OtlpBatch]):
    def __init__(self, settings: Settings, config: BatchConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        self.clock = settings.clock
        labels = (str(settings.id), (settings.signal or Signal.TRACES).value)
        self._refused = metrics.processor_refused_items.labels(*labels)
        self._replayed = metrics.batch_wal_replayed_items.labels(*labels)
        self._send_size = metrics.batch_send_size.labels(str(settings.id))
        self._size_trigger = metrics.batch_size_trigger_send.labels(str(settings.id))
        self._timeout_trigger = metrics.batch_timeout_trigger_send.labels(str(settings.id))
        self._pending: list[OtlpBatch] = []
        self._pending_spans = 0
        self._first_at = 0.0
        self._held: list[Held] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._wal: LogStore | None = None  # the storage's log when an exporter downstream persists
        self._segments: list[LogSegment] = []  # the log segments of `_pending`, the current one last

    async def start(self, host: Host) -> None:
        downstream = host.downstream(self)
        if downstream.storage:
            await self._open_log(host, downstream.storage, f"{self.id}-{downstream.pipeline}")
        self._task = asyncio.create_task(self._timer(), name=f"{self.id}-timer")

    async def consume(self, batch: OtlpBatch) -> None:
        if self._closed:  # a late request from a reloaded graph: pass it straight on
            await self.next.consume(batch)
            return
        if self._held:
            self._refused.inc(batch.item_count)
            raise Refused("the next stage is refusing data; retry later", retry_after=1.0)
        if self._wal is not None:
            self._log(self._wal, batch)
        if not self._pending:
            self._first_at = self.clock.monotonic()
            self._wakeup.set()
        self._pending.append(batch)
        self._pending_spans += batch.item_count
        if self._pending_spans >= self.config.send_batch_size or self.config.timeout == 0:
            self._size_trigger.inc()
            await self._flush()

    # -- the write-ahead log ---------------------------------------------------------------------
    async def _open_log(self, host: Host, storage: str, owner: str) -> None:
        self._wal = wal = host.storage(storage, f"processor {self.id}: the sending_queue.storage downstream"
                                       ).open_log(owner)
        recovered = 0
        for batches, segment in wal.take_recovered():
            if not batches:
                segment.remove()
                continue
            first = batches[0]
            if not isinstance(first, OtlpBatch):  # only this processor appends to its log: never so
                raise ValueError(f"{wal.directory}: a {type(first).__name__} in a batch processor's log")
            merged = type(first).merge(batches)
            pieces = merged.split(self.config.send_batch_max_size)
            flight = Flight([segment], len(pieces))
            self._held.extend((piece, self.next, flight) for piece in pieces)
            recovered += merged.item_count
        if recovered:
            self._replayed.inc(recovered)
            self.log.info("sending what an earlier run left in the write-ahead log, before new data",
                          extra={"kv": {"items": recovered, "directory": str(wal.directory)}})
            await self._retry_held()

    def _log(self, wal: LogStore, batch: OtlpBatch) -> None:
        """Append `batch` to the log before it is answered OK; a write that fails is a refusal."""
        try:
            if not self._segments or self._segments[-1].closed:
                self._segments.append(wal.open_segment())
            self._segments[-1].append(batch)
        except OSError as exc:
            if self._segments:
                self._segments[-1].close()  # a torn record may end it: later records go to a new one
            self._refused.inc(batch.item_count)
            self.log.error("cannot write the write-ahead log; refusing data",
                           extra={"kv": {"error": str(exc), "spans": batch.item_count}})
            raise Refused(f"processor {self.id}: cannot write the write-ahead log: {exc}", retry_after=1.0) from exc

    # -- sending ---------------------------------------------------------------------------------
    async def _flush(self) -> None:
        if not self._pending:
            return
        merged = type(self._pending[0]).merge(self._pending)
        self._pending, self._pending_spans = [], 0
        flight = self._take_flight()
        pieces = merged.split(self.config.send_batch_max_size)
        if flight is not None:
            flight.pieces = len(pieces)
        for piece in pieces:
            self._send_size.observe(piece.item_count)
            await self._offer(piece, self.next, flight)

    def _take_flight(self) -> Flight | None:
        if not self._segments:
            return None
        segments, self._segments = self._segments, []
        for segment in segments:
            segment.close()
        return Flight(segments)

    async def _offer(self, batch: OtlpBatch, target: Consumer, flight: Flight | None) -> bool:
        try:
            await target.consume(batch)
        except Refused as exc:
            self._held.append((batch, exc.retry_consumer or target, flight))
            self._wakeup.set()
            return False
        except PermanentError as exc:
            self.log.error("dropping data: the next stage refused it permanently",
                           extra={"kv": {"error": str(exc), "spans": batch.item_count}})
        if flight is not None:
            flight.piece_done()
        return True

    async def _retry_held(self) -> None:
        held, self._held = self._held, []
        for index, (batch, target, flight) in enumerate(held):
            if not await self._offer(batch, target, flight):
                self._held.extend(held[index + 1:])
                return

    async def _timer(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._held:
                await self.clock.sleep(RETRY_INTERVAL)
                await self._retry_held()
            elif self._pending:
                await self.clock.sleep(max(0.0, self._first_at + self.config.timeout - self.clock.monotonic()))
                if self._pending and self.clock.monotonic() >= self._first_at + self.config.timeout:
                    self._timeout_trigger.inc()
                    await self._flush()
            if not self._pending and not self._held:
                self._wakeup.clear()

    async def shutdown(self, deadline: float | None = None) -> None:
        self._closed = True
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._flush()
        while self._held and (deadline is None or self.clock.monotonic() < deadline):
            await self.clock.sleep(RETRY_INTERVAL)
            await self._retry_held()
        if self._held:
            self._give_up_held()
        if self._wal is not None:
            self._wal.release()

    def _give_up_held(self) -> None:
        spans = sum(batch.item_count for batch, _, _ in self._held)
        self._held = []
        if self._wal is not None:
            self.log.warning("shutdown deadline passed; batches the next stage kept refusing stay in the "
                             "write-ahead log for the next start",
                             extra={"kv": {"spans": spans, "directory": str(self._wal.directory)}})
            return
        self.log.error("shutdown deadline passed; dropping batches the next stage kept refusing",
                       extra={"kv": {"reason": "shutdown", "spans": spans}})


factory = Factory("batch", Kind.PROCESSOR, BatchConfig, BatchProcessor,
                  signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}),
                  description="merge batches by size and timeout")
