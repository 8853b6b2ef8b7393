"""The shared chDB engine's read path (pipeline/chdb_engine.py): reads run on their own thread
and connection, see what the writer committed, bind values as parameters, and cannot write."""
from __future__ import annotations

import asyncio
import threading

import pytest

from pipeline.chdb_engine import ChdbStore, ReadError


def _write(conn, sql: str) -> None:
    conn.query(sql, "TabSeparated")


def test_reads_see_writes_bind_parameters_and_refuse_changes(tmp_path) -> None:
    async def scenario() -> None:
        store = await ChdbStore.acquire(str(tmp_path / "chdb"))
        try:
            await store.call(_write, store.conn, "CREATE TABLE t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
            await store.call(_write, store.conn, "INSERT INTO t VALUES (1, 'x'), (2, 'it''s'), (3, 'y')")
            rows = await store.read("SELECT a, s FROM t WHERE s = {s:String} OR a > {n:UInt64} ORDER BY a",
                                    {"s": "it's", "n": 2})
            assert rows == [{"a": 2, "s": "it's"}, {"a": 3, "s": "y"}]
            for statement in ("INSERT INTO t VALUES (9, 'z')", "DROP TABLE t", "SET readonly = 0",
                              "SELECT 1 SETTINGS readonly = 0", "SELECT * FROM file('/etc/hostname', 'LineAsString')"):
                with pytest.raises(ReadError, match="readonly"):
                    await store.read(statement)
            with pytest.raises(ReadError, match="UNKNOWN_TABLE|does not exist"):
                await store.read("SELECT * FROM nowhere")
            assert await store.read("SELECT count() AS n FROM t") == [{"n": 3}]  # nothing was written
            for text in ("a'b", "back\\slash", "tab\there", "new\nline", "{x:String}", "x\\'y", "é😀"):
                sql = "SELECT {v:String} AS v, {a:Array(String)} AS a"
                echoed = await store.read(sql, {"v": text, "a": [text, ""]})
                assert echoed == [{"v": text, "a": [text, ""]}]
            # the writer still writes after the reader's session went read-only
            await store.call(_write, store.conn, "INSERT INTO t VALUES (4, 'w')")
            assert await store.read("SELECT count() AS n FROM t") == [{"n": 4}]
            loop = asyncio.get_running_loop()
            name = await loop.run_in_executor(store.reader, lambda: threading.current_thread().name)
            assert name.startswith("chdb-reader")
        finally:
            await store.release()
        assert not ChdbStore._open

    asyncio.run(scenario())
