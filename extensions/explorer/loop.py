"""The explorer's own event loop, on a thread of its own.

The daemon's event loop carries ingest. Under overload (the receiver refusing far more than it
accepts) its ready callbacks queue for a second or more, and every await of an explorer request
waited behind them: measured with benchmarks/bench_explorer.py's fleet offered at 10k spans/s on
2 cores, a static `GET /` took 0.8 s at the median and a 10-row `GET /api/sessions` 3.2 s, though
the engine answered its reads in milliseconds. Served from a loop of its own, a request waits
only for its own work. That work (store reads on the engine's reader thread, the shaping of the
answer) still shares the process's CPU and GIL with ingest: that cost is what the benchmark's
ingest ratio measures, and what the summaries and bounded reads keep small.

What crosses the two loops: the store and the writer run on executor threads, which a coroutine
on either loop may await; an authenticator extension (oidc's HTTP client, bound to the daemon's
loop) is called on the daemon's loop (`OnLoop`); the component's start and shutdown run the
server's and the store's on the explorer loop (`LoopThread.run`).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, Mapping, TypeVar

from pipeline.auth import Authenticator, Principal

T = TypeVar("T")


class LoopThread:
    """An event loop running on a daemon thread until `close`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """`coro`'s result, run on this loop, awaited from another one (cancelling it cancels `coro`)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop and its thread (after what `run` started has finished)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class OnLoop:
    """An authenticator whose `authenticate` runs on `loop`, where its clients were made."""

    def __init__(self, inner: Authenticator, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.loop = loop

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.inner.authenticate(headers),
                                                                          self.loop))
