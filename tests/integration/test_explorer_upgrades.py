"""The upgrades table (pipeline/clickhouse/sessions.py) on the real chDB engine, in this process:
which inserts record a trace counted under its own id that later names a real session, the
sessions list folding it in, and the trigger badges' trace locator (extensions/explorer/queries.py).

Spans are inserted the way the chdb exporter inserts them (one INSERT per batch, through the
materialized views); the session key on each span is what the genai processor writes: the
trace id while the trace's session key is unknown, the real session once it has come.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from extensions.explorer import queries as Q
from extensions.explorer.store import ChdbReader
from pipeline.chdb_engine import ChdbStore
from pipeline.clickhouse.schema import schema_statements
from pipeline.clickhouse.sessions import summary_statements

BASE_NS = 1_700_000_000 * 10**9
KEY = Q.TOKENS_IN


def trace_id(n: int) -> str:
    return f"{n:032x}"


def span(trace: int, n: int, session: str, parent: str = "", tokens: int = 0) -> str:
    """One row of the spans table: `session` "" for none, "own" for the trace id fallback."""
    named = trace_id(trace) if session == "own" else session
    attrs = {"gen_ai.conversation.id": named} if named else {}
    attrs["gen_ai.operation.name"] = "chat"
    attrs[KEY] = str(tokens)
    pairs = ", ".join(f"'{key}', '{value}'" for key, value in attrs.items())
    return (f"(fromUnixTimestamp64Nano(toInt64({BASE_NS + trace * 10**9 + n * 10**6})), '{trace_id(trace)}', "
            f"'{n:016x}', '{parent}', 'chat', 'Client', 'svc', map({pairs}), 1000, 'Unset')")


class Engine:
    """The engine with the spans table and its summaries, a writer and the explorer's reader."""

    def __init__(self, store: ChdbStore, reader: ChdbReader) -> None:
        self.store, self.reader = store, reader
        self.tables = Q.Tables.of("otel", "otel_traces", "agentdbg_decisions")

    async def run(self, sql: str) -> None:
        await self.store.call(lambda: self.store.conn.query(sql, "TabSeparated"))

    async def insert(self, *rows: str) -> None:
        """One batch, as one INSERT."""
        await self.run("INSERT INTO otel.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, "
                       f"ServiceName, SpanAttributes, Duration, StatusCode) VALUES {', '.join(rows)}")

    async def upgrades(self) -> dict[str, str]:
        rows = await self.reader.rows(f"SELECT TraceId AS t, max(Session) AS s FROM {self.tables.upgrades} GROUP BY t")
        return {row["t"]: row["s"] for row in rows}

    async def listed(self) -> dict[str, dict[str, Any]]:
        rows, _ = await Q.sessions(self.reader, self.tables, Q.SessionFilter(limit=100), 100)
        return {row["session"]: row for row in rows}


async def engine(path: Path) -> Engine:
    store = await ChdbStore.acquire(str(path))
    engine = Engine(store, ChdbReader(""))
    for statement in (*schema_statements("otel", "otel_traces"), *summary_statements("otel", "otel_traces")):
        await engine.run(statement)
    return engine


def test_a_late_root_is_recorded_once_and_folded_into_its_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await engine(tmp_path / "chdb")
        try:
            # trace 1: two children under the trace id, their root with session "s" in a later batch
            await db.insert(span(1, 1, "own", "0000000000000000", 10), span(1, 2, "own", "0000000000000000", 20))
            assert await db.upgrades() == {}
            await db.insert(span(1, 0, "s", tokens=5), span(2, 0, "s", tokens=7))  # trace 2: all under "s"
            # trace 3: both kinds of span in one batch (the batch processor merged two requests)
            await db.insert(span(3, 1, "own", "0000000000000000", 1), span(3, 0, "t", tokens=2))
            # trace 4: never names a session; trace 5: no session key at all
            await db.insert(span(4, 0, "own", tokens=3), span(5, 0, ""))
            assert await db.upgrades() == {trace_id(1): "s", trace_id(3): "t"}
            listed = await db.listed()
            assert set(listed) == {"s", "t", trace_id(4), trace_id(5)}
            assert (listed["s"]["spans"], listed["s"]["traces"], listed["s"]["tokens_in"]) == (4, 2, 42)
            assert (listed["t"]["spans"], listed["t"]["traces"], listed["t"]["tokens_in"]) == (2, 1, 3)
            assert listed["s"]["start_ns"] == BASE_NS + 10**9  # trace 1's root
            # later spans of trace 1 under "s" (the processor remembers it) add no second upgrade row
            await db.insert(span(1, 3, "s", "0000000000000000", 100))
            assert await db.upgrades() == {trace_id(1): "s", trace_id(3): "t"}
            assert (await db.listed())["s"]["tokens_in"] == 142
        finally:
            await db.store.release()

    asyncio.run(scenario())


class Counting(ChdbReader):
    """The real reader, counting the statements it runs (the locator's whole point is to run fewer)."""

    def __init__(self) -> None:
        super().__init__("")
        self.reads = 0

    async def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        self.reads += 1
        return await super().rows(sql, params)


def test_the_trace_locator_keeps_real_sessions_and_asks_again_for_a_trace_under_its_own_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await engine(tmp_path / "chdb")
        try:
            now = [0.0]
            reader = Counting()
            locator = Q.TraceLocator(size=3, recheck=30.0, clock=lambda: now[0])
            await db.insert(span(1, 1, "own", "0000000000000000"), span(2, 0, "s"))
            ids = [trace_id(1), trace_id(2), trace_id(9)]  # 9: not stored (yet)
            assert await locator.sessions(reader, db.tables, ids) == {trace_id(1): trace_id(1), trace_id(2): "s"}
            assert reader.reads == 1
            await db.insert(span(1, 0, "r"))  # trace 1's root names its session
            now[0] = 29.0
            assert await locator.sessions(reader, db.tables, ids) == {trace_id(1): trace_id(1), trace_id(2): "s"}
            assert reader.reads == 1  # remembered, nothing read
            now[0] = 30.0
            assert await locator.sessions(reader, db.tables, ids) == {trace_id(1): "r", trace_id(2): "s"}
            assert reader.reads == 2  # traces 1 and 9 asked again, trace 2 kept
            now[0] = 1000.0
            assert await locator.sessions(reader, db.tables, ids[:2]) == {trace_id(1): "r", trace_id(2): "s"}
            assert reader.reads == 2  # real sessions are kept for good
            await locator.sessions(reader, db.tables, [trace_id(10), trace_id(11)])
            assert reader.reads == 3 and len(locator._known) == 3  # bounded: the least recently used went
        finally:
            await db.store.release()

    asyncio.run(scenario())
