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
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import NonNegativeInt, model_validator

from pipeline.component import Consumer, Factory, Kind, Processor, Settings, Signal, StrictConfig
from pipeline.config.units import Duration
from pipeline.errors import PermanentError, Refused
from pipeline.telemetry import metrics
from pipeline.traces import OtlpBatch

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


class BatchProcessor(Processor):
    def __init__(self, settings: Settings, config: BatchConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        labels = (str(settings.id), (settings.signal or Signal.TRACES).value)
        self._incoming = metrics.processor_incoming_items.labels(*labels)
        self._outgoing = metrics.processor_outgoing_items.labels(*labels)
        self._refused = metrics.processor_refused_items.labels(*labels)
        self._send_size = metrics.batch_send_size.labels(str(settings.id))
        self._size_trigger = metrics.batch_size_trigger_send.labels(str(settings.id))
        self._timeout_trigger = metrics.batch_timeout_trigger_send.labels(str(settings.id))
        self._pending: list[OtlpBatch] = []
        self._pending_spans = 0
        self._first_at = 0.0
        self._held: list[tuple[OtlpBatch, Consumer]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, host: Any) -> None:
        self._task = asyncio.create_task(self._timer(), name=f"{self.id}-timer")

    async def consume(self, batch: OtlpBatch) -> None:
        if self._closed:  # a late request from a reloaded graph: pass it straight on
            await self.next.consume(batch)
            return
        if self._held:
            self._refused.inc(batch.span_count)
            raise Refused("the next stage is refusing data; retry later", retry_after=1.0)
        self._incoming.inc(batch.span_count)
        if not self._pending:
            self._first_at = time.monotonic()
            self._wakeup.set()
        self._pending.append(batch)
        self._pending_spans += batch.span_count
        if self._pending_spans >= self.config.send_batch_size or self.config.timeout == 0:
            self._size_trigger.inc()
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        merged = type(self._pending[0]).merge(self._pending)
        self._pending, self._pending_spans = [], 0
        for piece in merged.split(self.config.send_batch_max_size):
            self._send_size.observe(piece.span_count)
            await self._offer(piece, self.next)

    async def _offer(self, batch: OtlpBatch, target: Consumer) -> bool:
        try:
            await target.consume(batch)
        except Refused as exc:
            self._held.append((batch, exc.retry_consumer or target))
            self._wakeup.set()
            return False
        except PermanentError as exc:
            self.log.error("dropping data: the next stage refused it permanently",
                           extra={"kv": {"error": str(exc), "spans": batch.span_count}})
            return True
        self._outgoing.inc(batch.span_count)
        return True

    async def _retry_held(self) -> None:
        held, self._held = self._held, []
        for index, (batch, target) in enumerate(held):
            if not await self._offer(batch, target):
                self._held.extend(held[index + 1:])
                return

    async def _timer(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._held:
                await asyncio.sleep(RETRY_INTERVAL)
                await self._retry_held()
            elif self._pending:
                await asyncio.sleep(max(0.0, self._first_at + self.config.timeout - time.monotonic()))
                if self._pending and time.monotonic() >= self._first_at + self.config.timeout:
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
        while self._held and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(RETRY_INTERVAL)
            await self._retry_held()
        if self._held:
            spans = sum(batch.span_count for batch, _ in self._held)
            self.log.error("shutdown deadline passed; dropping batches the next stage kept refusing",
                           extra={"kv": {"reason": "shutdown", "spans": spans}})
            self._held = []


factory = Factory("batch", Kind.PROCESSOR, BatchConfig, BatchProcessor,
                  signals=frozenset({Signal.TRACES, Signal.METRICS}), description="merge batches by size and timeout")
