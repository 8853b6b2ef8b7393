"""The process's one embedded ClickHouse engine (chDB) on one data directory.

Shared by the `chdb` exporter (which writes spans and the audit table) and the `explorer`
extension (which reads them), so neither imports the other.

What it promises:
- one process per directory: `ChdbStore.acquire` takes an exclusive `flock` on
  `<path>/agentdbg.lock` (holding our pid) and fails with an error naming the directory and
  the other process's pid when someone holds it. chDB allows no second process on a
  directory, not even a read-only one (its `status` file lock);
- one directory per process: chDB hosts one engine per process, so a second path is refused
  while one is open; every user of the same path shares the store (reference counted);
- chDB calls never run on the event loop. Writes go through `call` on the writer thread, in
  the order they were made. Reads go through `read` on a separate reader thread with its own
  connection to the same engine. Measured (chDB 4.4, 2 cores, a loop of 10k-row inserts
  beside a loop of full-scan queries on a 1M-row table): queries on the writer's connection
  serialise with its inserts (inserts fell from ~42 to ~7 a second), queries on a second
  connection left them at 32-48 a second. A read sees every insert committed before it started;
- reads cannot change anything: the reader connection's session has `readonly = 1`, which
  the engine enforces on every statement (INSERT, DDL, `SET readonly`, a `SETTINGS` clause
  and the `file`/`url` table functions are refused), and limits that end a runaway query
  with an error rather than a stalled reader: `max_execution_time` and `max_result_rows`.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, ClassVar, Mapping

import orjson

from pipeline.private_files import open_private, private_dir
from pipeline.residency import register_releaser, unregister_releaser

LOCK_NAME = "agentdbg.lock"
# The reader session's settings, set before `readonly` forbids changing any of them.
READ_SETTINGS: dict[str, Any] = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 1,
    "output_format_pretty_color": 0,
    "max_execution_time": 30,
    "max_result_rows": 500_000,
    "result_overflow_mode": "'throw'",
    # Bounded so a read cannot starve the writer: one thread and a quarter of the engine's memory
    # cap (`connect`: 256 MiB; a read past it fails alone). No `priority`: measured beside a loop of
    # inserts with a higher one, a 15 ms sessions read waited 2.4-5.5 s (the engine pauses it while
    # any insert runs, and under load one always is) against 0.5-0.7 s without.
    "max_threads": 1,
    "max_memory_usage": 64 << 20,
    # The OS nice value of the engine's threads while they run a read: under CPU contention the
    # scheduler gives them what ingest (nice 0) leaves; on an idle machine they run at full
    # speed. The engine applies it only with CAP_SYS_NICE (root has it), else it is a no-op.
    "os_thread_priority": 19,
}


class DirectoryInUse(RuntimeError):
    """Another process holds the data directory."""

    def __init__(self, path: str, pid: str) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"chdb data directory {path} is in use by {who} (lock file {os.path.join(path, LOCK_NAME)}); "
            "chDB allows one process per data directory: stop that process or use another path")
        self.path = path
        self.pid = pid


class ReadError(RuntimeError):
    """The engine refused a read (bad SQL, a write in read-only mode, a limit); the message is its own."""


def lock_directory(path: str) -> IO[str]:
    """Take the exclusive lock on `path` (created if missing) and write our pid; raise DirectoryInUse."""
    private_dir(path)
    handle = open_private(os.path.join(path, LOCK_NAME), "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        pid = handle.read().strip()
        handle.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DirectoryInUse(path, pid) from None
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def unlock_directory(handle: IO[str]) -> None:
    handle.seek(0)
    handle.truncate()
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


class ChdbStore:
    """This process's chDB engine on one directory: the lock, the writer's connection and
    thread, and a read-only connection on a reader thread."""

    _open: ClassVar[dict[str, "ChdbStore"]] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self.refs = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="chdb-writer")
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="chdb-reader")
        self.conn: Any = None
        self._read_conn: Any = None
        self._lock: IO[str] | None = None
        self._purge_pending = False

    @classmethod
    async def acquire(cls, path: str) -> "ChdbStore":
        real = os.path.realpath(path)
        store = cls._open.get(real)
        if store is None:
            if cls._open:
                other = next(iter(cls._open))
                raise RuntimeError(f"chDB hosts one data directory per process: cannot open {real} while {other} "
                                   "is open; give every chdb exporter the same path")
            store = cls(real)
            await store._open_engine()
            cls._open[real] = store
        store.refs += 1
        return store

    @classmethod
    def current(cls) -> "ChdbStore | None":
        """The store this process has open, if any (a reader that shares the writer's engine)."""
        return next(iter(cls._open.values()), None)

    async def _open_engine(self) -> None:
        self._lock = lock_directory(self.path)
        try:
            self.conn = await self.call(connect, self.path)
        except BaseException:
            unlock_directory(self._lock)
            self.pool.shutdown(wait=False)
            self.reader.shutdown(wait=False)
            raise
        register_releaser(f"chdb:{self.path}", self.purge_allocator)

    def purge_allocator(self) -> None:
        """Queue `SYSTEM JEMALLOC PURGE` on the writer thread (behind the inserts already queued;
        at most one pending): the engine's allocator keeps freed pages for reuse, which after an
        insert burst is tens of MiB of RSS that memory_limiter would otherwise count against the
        daemon. Called by pipeline/residency.release_memory; never blocks the caller."""
        if self._purge_pending or self.conn is None:
            return
        self._purge_pending = True
        self.pool.submit(self._purge)

    def _purge(self) -> None:
        try:
            self.conn.query("SYSTEM JEMALLOC PURGE", "TabSeparated")
        except Exception:  # a build without jemalloc, or a closing engine: nothing to give back
            pass
        finally:
            self._purge_pending = False

    async def call(self, func: Any, *args: Any) -> Any:
        """Run `func(*args)` on the writer thread (after every call made before it)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, func, *args)

    async def read(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a read-only statement, as dicts, from the reader thread; raises ReadError.

        Values go in as `params` ({name:Type} placeholders, bound by the engine), never as text
        pasted into `sql`."""
        return await asyncio.get_running_loop().run_in_executor(self.reader, self._read, sql, dict(params or {}))

    async def write(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows (if any) of a statement run on the writer's connection and thread, in order with
        the exporter's inserts: for the few writes that are not inserts (an erasure's DELETE and its
        audit row). Values go in as `params`, as for `read`; raises ReadError with the engine's message."""
        return await self.call(self._write, sql, dict(params or {}))

    def _write(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            bound = {"params": {k: param_text(v) for k, v in params.items()}} if params else {}
            result = self.conn.query(sql, "JSONEachRow", **bound)
        except Exception as exc:  # noqa: BLE001 - the engine's message is the answer
            raise ReadError(" ".join(str(exc).split())) from None
        return [orjson.loads(line) for line in (result.bytes() or b"").splitlines() if line]

    async def read_raw(self, sql: str, fmt: str) -> bytes:
        """The engine's own output of a read-only statement in format `fmt`; raises ReadError."""
        return await asyncio.get_running_loop().run_in_executor(self.reader, self._read_bytes, sql, fmt, {})

    def _read(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        data = self._read_bytes(sql, "JSONEachRow", params)
        return [orjson.loads(line) for line in data.splitlines() if line]

    def _read_bytes(self, sql: str, fmt: str, params: dict[str, Any]) -> bytes:
        if self._read_conn is None:
            self._read_conn = _read_connection(self.path)
        try:
            if params:
                result = self._read_conn.query(sql, fmt, params={k: param_text(v) for k, v in params.items()})
            else:
                result = self._read_conn.query(sql, fmt)
        except Exception as exc:  # noqa: BLE001 - the engine's message is the answer
            raise ReadError(" ".join(str(exc).split())) from None
        return result.bytes() or b""

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    async def release(self) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        self._open.pop(self.path, None)
        unregister_releaser(f"chdb:{self.path}")
        try:
            await asyncio.get_running_loop().run_in_executor(self.reader, self._close_reader)
            await self.call(self.conn.close)
        finally:
            self.reader.shutdown(wait=True)
            self.pool.shutdown(wait=True)
            if self._lock is not None:
                unlock_directory(self._lock)


def param_text(value: Any) -> str:
    """A parameter value as text the engine parses for its `{name:Type}` (chDB passes text
    through): a scalar in its escaped (TabSeparated) form, so backslash, tab and newline are
    escaped; an array as a literal `['a', 'b']`, each string quoted with `\\` and `\'` escaped
    (checked: quotes, backslashes, tabs, newlines, braces and non-ASCII text come back as given)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, str):
        return _escaped(value)
    return str(value)


def _escaped(text: str) -> str:
    return text.translate(_ESCAPES)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return param_text(value)


def _read_connection(path: str) -> Any:
    """A second connection to the engine already open on `path`, its session made read-only."""
    import chdb

    conn = chdb.connect(path)
    for key, value in READ_SETTINGS.items():
        conn.query(f"SET {key} = {value}", "TabSeparated")
    conn.query("SET readonly = 1", "TabSeparated")
    return conn


def connect(path: str) -> Any:
    """Open the engine on `path` with its memory capped by its own settings, then give back
    the start-up pages of its library (pipeline/residency.py).

    chDB passes the connection string's parameters to the engine as start-up settings, so
    server settings work there. By default the engine sizes itself for a server: it may use
    90 % of the machine's RAM, with 5 GiB mark and primary-index caches. Embedded beside the
    daemon it gets `max_server_memory_usage` 256 MiB (past it a query or insert fails with
    MEMORY_LIMIT_EXCEEDED, which the exporter retries: the queue then fills and the receiver
    refuses, retryably), and small caches: marks and primary index 16 MiB each, no
    uncompressed cache, 16 MiB for compiled expressions and the query-condition cache. The
    engine's own tracked memory stays about 20 MB while it stores tens of thousands of spans
    a second."""
    import chdb

    from pipeline.residency import release_clean_pages

    mib = 1 << 20
    settings = {
        "max_server_memory_usage": 256 * mib, "mark_cache_size": 16 * mib, "index_mark_cache_size": 16 * mib,
        "primary_index_cache_size": 16 * mib, "uncompressed_cache_size": 0, "index_uncompressed_cache_size": 0,
        "compiled_expression_cache_size": 16 * mib, "query_condition_cache_size": 16 * mib,
        "vector_similarity_index_cache_size": 16 * mib,
    }
    try:
        conn = chdb.connect(f"file:{path}?" + "&".join(f"{key}={value}" for key, value in settings.items()))
    except RuntimeError as exc:
        raise RuntimeError(f"cannot open chdb data directory {path}: {exc}") from exc
    release_clean_pages("/chdb/_chdb")
    return conn
