"""QueuedExporter: the base of every exporter that talks to something that can be slow or down.

Guarantees (Vector-style):
- `consume` never waits on the destination: it puts the batch on a bounded queue
  (`sending_queue.queue_size` batches) and returns. When the queue is full it raises a
  retryable `Refused("sending queue is full")`, counted in
  `otelcol_exporter_enqueue_failed_spans`; the receiver tells the client to retry. With
  `block_on_overflow` it waits for room instead. With the queue disabled, `consume` sends
  synchronously and passes the outcome back.
- `num_consumers` workers send batches, each attempt bounded by `timeout`.
- A retryable failure (`RetryableError`, timeout, connection error) is retried with
  exponential backoff and jitter, never sooner than the server's hint; when
  `max_elapsed_time` runs out the batch is dropped, counted as `retries_exhausted` and logged.
  Each retry is counted (`otelcol_exporter_retried_requests`); "send failed, will retry" is
  logged at most once per 10 s, with how many retries were held back since.
- A `PermanentError` is not retried: counted under its `error_type` and logged.
- `send` may report that the destination took only part of a batch (`PartialFailure`, or a
  list of them, one per error type): the rest is counted as failed, never retried. An
  exporter that stores rows isolates the bad ones this way (exporters/helper/isolate.py), so
  one bad row never costs its neighbours, and a batch never holds the queue for longer than
  its own retry policy (`max_elapsed_time`).
- Shutdown stops taking batches and drains the queue until the deadline; whatever is still
  queued or in flight then is counted as failed (`shutdown`) and logged, never lost silently.
- With `sending_queue.storage` (a `file_storage` extension) each batch is written to disk
  before `consume` returns and removed once it was sent or failed permanently; what is
  left at the shutdown deadline, or after a crash, stays on disk and is sent at the next
  start, before new data. Each exporter id and pipeline type has a directory of its own
  (`queue_owner`), so an exporter in a traces and a logs pipeline replays each batch to its
  own signal's endpoint.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from prometheus_client import Counter

from exporters.helper.backoff import Backoff
from exporters.helper.settings import ExporterHelperConfig
from pipeline import status
from pipeline.component import B, Exporter, Settings, Signal
from pipeline.contracts import QueueStore
from pipeline.errors import PartialFailure, PermanentError, Refused, RetryableError
from pipeline.host import Host
from pipeline.telemetry import metrics
from pipeline.telemetry.logs import Throttled


class QueuedExporter(Exporter[B]):
    def __init__(self, settings: Settings, config: ExporterHelperConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.clock = settings.clock
        data_type = (settings.signal.value if settings.signal else "traces")
        name = str(settings.id)
        # otelcol's names per signal: log records for a logs pipeline; spans otherwise (metrics and
        # events pipelines count their items under the span names).
        logs = settings.signal == Signal.LOGS
        self._failed_counter = metrics.exporter_send_failed_log_records if logs else metrics.exporter_send_failed_spans
        self._sent = (metrics.exporter_sent_log_records if logs else metrics.exporter_sent_spans).labels(name)
        self._enqueue_failed = (metrics.exporter_enqueue_failed_log_records if logs
                                else metrics.exporter_enqueue_failed_spans).labels(name)
        self._retried = metrics.exporter_retried_requests.labels(name)
        self._retry_log = Throttled(self.log)  # every retry is counted; one line per 10 s is logged
        self._status: status.StatusReporter = status.reporter(settings.kind, settings.id, settings.signal)
        self._failed_by_type: dict[str, Counter] = {}
        self._queue_size = metrics.exporter_queue_size.labels(name, data_type)
        self._in_flight = metrics.exporter_in_flight_requests.labels(name, data_type)
        metrics.exporter_queue_capacity.labels(name, data_type).set(config.sending_queue.queue_size)
        # Capacity is enforced in `consume`, not by the Queue: batches recovered from disk at
        # start may exceed it, and then new data waits (or is refused) until they drain.
        self._queue: asyncio.Queue[tuple[B, Path | None]] = asyncio.Queue()
        self._space = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False
        self._in_flight_items = 0
        self._store: QueueStore | None = None  # the storage extension's files when the queue is persistent

    # -- subclass hooks ----------------------------------------------------------------------
    async def start_client(self) -> None:
        """Open connections. Failing here must not stop the daemon: raise nothing for outages."""

    async def send(self, batch: B) -> int | PartialFailure | list[PartialFailure] | None:
        """Deliver one batch; raise RetryableError / PermanentError on failure.

        May return how many items the destination rejected while taking the rest
        (OTLP partial_success), or PartialFailures naming their error types; those are
        counted as failed, not retried.
        """
        raise NotImplementedError

    def unsent(self, batch: B) -> int:
        """Items of `batch` not delivered yet, counted as failed when the helper gives up on it."""
        return self.item_count(batch)

    def settled(self, batch: B) -> None:
        """Called once the helper is done with `batch`, whatever the outcome."""

    async def stop_client(self) -> None:
        """Close connections after the queue has drained."""

    def item_count(self, batch: B) -> int:
        """The items of `batch` the counters count (an exporter that sends fewer may say so)."""
        return batch.item_count

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        await self.start_client()
        if self.persistent_storage:
            self._open_store(host, self.persistent_storage)
        if self.config.sending_queue.enabled:
            self._workers = [asyncio.create_task(self._worker(), name=f"{self.id}-sender-{i}")
                             for i in range(self.config.sending_queue.num_consumers)]

    async def consume(self, batch: B) -> None:
        if self._closing:
            raise Refused(f"exporter {self.id} is shutting down", retry_after=1.0)
        if not self.config.sending_queue.enabled:
            await self._send_now(batch)
            return
        while self._queue.qsize() >= self.config.sending_queue.queue_size:
            if not self.config.sending_queue.block_on_overflow:
                self._enqueue_failed.inc(self.item_count(batch))
                raise Refused("sending queue is full", retry_after=self._refusal_hint())
            self._space.clear()
            await self._space.wait()
        token = self._store.put(batch) if self._store is not None else None
        self._queue.put_nowait((batch, token))
        self._queue_size.set(self._queue.qsize())

    @property
    def persistent_storage(self) -> str | None:
        """`pipeline.contracts.QueueOwner`: the storage extension the sending queue is kept in."""
        queue = self.config.sending_queue
        return str(queue.storage) if queue.enabled and queue.storage else None

    @property
    def queue_owner(self) -> str:
        """The queue's directory name in the storage: one per exporter id and pipeline type. The graph
        builds an instance per signal, and each must get back only what it put there (a traces
        instance replaying a logs batch would send it to the traces endpoint). Traces keep the bare
        id, so queues written before this rule are still found."""
        signal = self.settings.signal
        return str(self.id) if signal in (None, Signal.TRACES) else f"{self.id}-{signal.value}"

    def _open_store(self, host: Host, name: str) -> None:
        storage = host.storage(name, f"exporter {self.id}: sending_queue.storage")
        self._store = store = storage.open_store(self.queue_owner)
        recovered = 0
        for stored, path in store.recover():
            batch = cast(B, stored)  # the store gives back what this exporter put there
            self._queue.put_nowait((batch, path))
            recovered += self.item_count(batch)
        if recovered:
            self.log.info("sending what an earlier run left in the queue", extra={"kv": {"items": recovered}})

    async def shutdown(self, deadline: float | None = None) -> None:
        self._closing = True
        if self._workers:
            remaining = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            try:
                await self.clock.wait_for(self._queue.join(), remaining)
            except asyncio.TimeoutError:
                self._drop_remaining()
            for task in self._workers:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        await self.stop_client()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # -- sending -------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            batch, token = await self._queue.get()
            self._space.set()
            self._queue_size.set(self._queue.qsize())
            self._in_flight_items += self.item_count(batch)
            self._in_flight.inc()
            try:
                await self._deliver(batch)
                if token is not None and self._store is not None:
                    self._store.remove(token)  # sent or failed for good: not after a cancellation
            finally:
                self.settled(batch)
                self._in_flight.dec()
                self._in_flight_items -= self.item_count(batch)
                self._queue.task_done()

    async def _attempt(self, batch: B) -> None:
        outcome = await self.clock.wait_for(self.send(batch), self.config.timeout or None)
        failures = outcome if isinstance(outcome, list) else [
            outcome if isinstance(outcome, PartialFailure) else PartialFailure(outcome or 0)]
        self._sent.inc(self.item_count(batch) - sum(failure.rejected for failure in failures))
        self._status.ok()  # the destination answered: health shows StatusOK again
        for failure in failures:
            if failure.rejected:
                self.count_failed(failure.rejected, failure.error_type, failure.reason)

    async def _send_now(self, batch: B) -> None:
        """Queue disabled: one attempt, outcome handed back to the caller."""
        try:
            await self._attempt(batch)
        except PermanentError as exc:
            self.count_failed(self.unsent(batch), exc.error_type, str(exc))
            raise
        except (RetryableError, asyncio.TimeoutError, OSError) as exc:
            hint = retry_hint(exc) or 1.0
            self._status.recoverable_error(describe(exc))
            raise Refused(f"exporter {self.id}: {describe(exc)}", retry_after=hint) from exc
        finally:
            self.settled(batch)

    async def _deliver(self, batch: B) -> None:
        retry = self.config.retry_on_failure
        backoff = Backoff(retry)
        started = self.clock.monotonic()
        while True:
            try:
                await self._attempt(batch)
                return
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                self.count_failed(self.unsent(batch), exc.error_type, str(exc))
                return
            except Exception as exc:  # otelcol's rule: anything not marked permanent is retryable
                hint = retry_hint(exc)
                self._status.recoverable_error(describe(exc))
                delay = backoff.next_delay(hint)
                elapsed = self.clock.monotonic() - started
                if not retry.enabled or (retry.max_elapsed_time and elapsed + delay > retry.max_elapsed_time):
                    reason = "retries_exhausted" if retry.enabled else \
                        exc.error_type if isinstance(exc, RetryableError) else "send_failed"
                    self.count_failed(self.unsent(batch), reason, describe(exc))
                    return
                self._retried.inc()
                self._retry_log.warning("send failed, will retry", {
                    "error": describe(exc), "retry_in_s": round(delay, 3), "spans": self.item_count(batch)})
                await self.clock.sleep(delay)

    def count_sent(self, count: int) -> None:
        self._sent.inc(count)

    def count_failed(self, count: int, error_type: str, message: str) -> None:
        """Count `count` items as given up on under `error_type`, with one log line."""
        counter = self._failed_by_type.get(error_type)
        if counter is None:
            counter = self._failed_counter.labels(str(self.id), error_type)
            self._failed_by_type[error_type] = counter
        counter.inc(count)
        self.log.error("dropping data", extra={"kv": {"reason": error_type, "error": message, "spans": count}})

    def _drop_remaining(self) -> None:
        dropped = self._in_flight_items
        while not self._queue.empty():
            dropped += self.item_count(self._queue.get_nowait()[0])
            self._queue.task_done()
        if self._store is not None:
            self.log.warning("shutdown deadline passed; unsent batches stay on disk for the next start",
                             extra={"kv": {"items": dropped, "directory": str(self._store.directory)}})
            return
        if dropped:
            self.count_failed(dropped, "shutdown", "shutdown deadline passed before the queue drained")

    def _refusal_hint(self) -> float:
        """Suggest a retry after roughly the time one retry interval takes to free room."""
        return max(1.0, min(self.config.retry_on_failure.initial_interval, 5.0))


def retry_hint(exc: BaseException) -> float | None:
    """The destination's "retry after" in seconds, when the failure carries one."""
    return exc.retry_after if isinstance(exc, RetryableError) else None


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
