"""Where the explorer reads: the `Store` protocol and its two implementations.

- `ChdbReader`: the embedded engine of this process (pipeline/chdb_engine.py), read on its
  reader thread with a read-only connection while the `chdb` exporter writes on its own;
- `ClickHouseReader`: a ClickHouse server over HTTP (clickhouse-connect), every statement
  sent with `readonly = 2` (the server refuses writes and DDL; the client may still send its
  own format settings).

Both bind values as query parameters (`{name:Type}` placeholders, bound by the engine):
no SQL text is ever built from what a user typed. Both answer rows as dicts of JSON-ready
values (times as integer nanoseconds, maps as objects) and raise `StoreError` with the
engine's message.

Reads must not starve the writer (the exporter inserting into the same engine):
- every read runs with bounded engine settings: one or two threads, a memory cap well under the
  engine's (a read past it fails alone, with MEMORY_LIMIT_EXCEEDED, instead of pushing the
  writer's inserts over the engine's total), a time limit and a result-row limit. For chDB
  they are the reader session's settings (pipeline/chdb_engine.py `READ_SETTINGS`); for a server,
  `ClickHouseReader.SETTINGS` on every statement. Not the engine's query `priority`: a read
  ranked below the inserts is paused whenever one runs, and under steady ingest one always does
  (measured: a 15 ms read waited seconds), so reads are kept cheap and few instead. What they
  do get is the OS's lowest CPU priority (`os_thread_priority` 19, the nice value of the engine's
  threads while they run the read): on a saturated machine the scheduler gives ingest's threads
  first call on the CPU, and a read takes longer rather than taking from ingest; on an idle one
  nothing changes. The engine honours it only with CAP_SYS_NICE;
- a `ReadGate` admits a few reads at a time and queues a few more: a read past the queue, or
  one that waited longer than `max_wait` for its turn, is refused at once with `StoreBusy`
  (the API answers 503 with Retry-After) rather than waiting in an unbounded queue. A read
  whose caller went away keeps its slot until the engine has finished it.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Awaitable, Callable, Mapping, Protocol, TypeVar

from pipeline.chdb_engine import ChdbStore, ReadError


class StoreError(RuntimeError):
    """The store refused or failed a read; `missing` when a table does not exist (yet)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.missing = "UNKNOWN_TABLE" in message or "UNKNOWN_DATABASE" in message


class StoreBusy(StoreError):
    """Too many reads are running or waiting: try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


T = TypeVar("T")


class ReadGate:
    """At most `running` reads at once, `waiting` more queued for at most `max_wait` seconds."""

    def __init__(self, running: int, waiting: int, max_wait: float) -> None:
        self.running, self.waiting, self.max_wait = running, waiting, max_wait
        self._slots = asyncio.Semaphore(running)
        self.admitted = 0  # running or queued now

    def _busy(self, why: str) -> StoreBusy:
        return StoreBusy(f"the store is busy ({why}); try again shortly", max(1.0, math.ceil(self.max_wait / 5)))

    async def run(self, read: Callable[[], Awaitable[T]]) -> T:
        if self.admitted >= self.running + self.waiting:
            raise self._busy(f"{self.running} reads running and {self.waiting} waiting")
        self.admitted += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.max_wait)
            except asyncio.TimeoutError:
                raise self._busy(f"no read finished within {self.max_wait:g} s") from None
            future = asyncio.ensure_future(read())
            try:
                return await asyncio.shield(future)
            finally:  # a cancelled caller: the engine still runs the read, so it keeps the slot
                if future.done():
                    self._slots.release()
                else:
                    future.add_done_callback(self._release_after)
        finally:
            self.admitted -= 1


    def _release_after(self, done: asyncio.Future[Any]) -> None:
        """The slot of a read whose caller went away, once the engine has finished it."""
        if not done.cancelled():
            done.exception()  # retrieved: nobody else will
        self._slots.release()


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    async def raw(self, sql: str, fmt: str) -> bytes: ...


class ChdbReader:
    """The process's chDB engine: the one the `chdb` exporter opened (`path` ""), or `path`'s."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._store: ChdbStore | None = None
        self._owned = False
        self.gate = ReadGate(1, 8, 5.0)  # the engine's one reader thread

    async def start(self) -> None:
        if self.path:
            self._store = await ChdbStore.acquire(self.path)
            self._owned = True

    async def close(self) -> None:
        if self._owned and self._store is not None:
            await self._store.release()
        self._store = None

    def _engine(self) -> ChdbStore:
        if self._store is not None:
            return self._store
        opened = ChdbStore.current()
        if opened is None:
            raise StoreError("no chdb store is open in this process (is a chdb exporter configured and started?); "
                             "set extensions::explorer::path to open one")
        return opened

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        engine = self._engine()
        try:
            return await self.gate.run(lambda: engine.read(sql, params))
        except ReadError as exc:
            raise StoreError(str(exc)) from None

    async def raw(self, sql: str, fmt: str) -> bytes:
        engine = self._engine()
        try:
            return await self.gate.run(lambda: engine.read_raw(sql, fmt))
        except ReadError as exc:
            raise StoreError(str(exc)) from None


class ClickHouseReader:
    """A ClickHouse server over HTTP, read-only per statement."""

    SETTINGS = {"readonly": 2, "max_execution_time": 30, "output_format_json_quote_64bit_integers": 0,
                "max_threads": 2, "max_memory_usage": 512 << 20, "max_result_rows": 500_000,
                "result_overflow_mode": "throw", "os_thread_priority": 19}

    def __init__(self, endpoint: str, username: str, password: str) -> None:
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self._client: Any = None
        self.gate = ReadGate(2, 8, 5.0)

    async def start(self) -> None:
        from urllib.parse import urlsplit

        import clickhouse_connect

        url = urlsplit(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        self._client = await clickhouse_connect.get_async_client(
            host=url.hostname or "localhost", port=url.port or (8443 if url.scheme == "https" else 8123),
            username=self.username, password=self.password, secure=url.scheme == "https",
            autogenerate_session_id=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        import orjson

        data = await self._query(sql, "JSONEachRow", params)
        return [orjson.loads(line) for line in data.splitlines() if line]

    async def raw(self, sql: str, fmt: str) -> bytes:
        return await self._query(sql, fmt, None)

    async def _query(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        if self._client is None:
            raise StoreError("the ClickHouse client is not started")
        try:
            client = self._client
            return await self.gate.run(lambda: client.raw_query(sql, parameters=dict(params or {}),
                                                                settings=self.SETTINGS, fmt=fmt))
        except StoreBusy:
            raise
        except Exception as exc:  # noqa: BLE001 - the server's message is the answer
            raise StoreError(" ".join(str(exc).split())) from None
