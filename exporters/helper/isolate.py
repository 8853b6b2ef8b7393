"""Row isolation: when a destination refuses a whole insert because of a few rows, store all the others.

A table insert (ClickHouse, chDB) is all or nothing: one value the engine cannot take fails
the whole batch, and sending the same batch again fails the same way. `RowIsolation` plans
the inserts of one batch as row ranges `[start, stop)`: the whole batch first; a range refused
with `InvalidData` is split in two halves, each tried again (first half first), down to single
rows, which are then refused for good (bisection). A good batch costs one insert; k bad rows
among n cost at most about 2·k·log2(n) + 1 inserts; every good row is stored once.

Other outcomes of an insert:
- another `PermanentError` (the statement itself is refused: unknown column, syntax error)
  refuses every row not yet stored, under its own error type, with no further inserts;
- anything else (retryable: destination down, overload, timeout) propagates to the exporter
  helper's retry loop and the plan is kept: the next attempt resumes with the ranges not
  yet stored, so rows already stored are not written again.

`IsolatingExporter` is the exporter side: it builds a batch's rows once (`prepare`; a batch
whose rows cannot be built at all is refused whole, as `invalid_data`, and dead-lettered:
building them again would fail alike), runs the plan through `insert_rows`, keeps the refused rows in a
dead-letter directory (`refused_batch` → exporters/helper/dead_letter.py) and reports them as `PartialFailure`s, so
they are counted in `otelcol_exporter_send_failed_spans` under their error type
(`invalid_data` for refused values) with one log line per batch and error type, never per row.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Sized, TypeVar

from exporters.helper.dead_letter import DeadLetters
from exporters.helper.queued import QueuedExporter
from exporters.helper.settings import ExporterHelperConfig
from pipeline.component import B, Settings
from pipeline.errors import InvalidData, PartialFailure, PermanentError, RetryableError
from pipeline.pdata.batch import Batch

Range = tuple[int, int]


@dataclass
class Refusal:
    """Rows refused for good under one error type, with the first error's text as the reason."""

    error_type: str
    reason: str
    rows: list[int] = field(default_factory=list)


class RowIsolation:
    """The insert plan of one batch of `rows` rows; see the module docstring."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.stored = 0
        self.inserts = 0
        self.refusals: dict[str, Refusal] = {}
        self._todo: list[Range] = [(0, rows)] if rows > 0 else []  # a stack: the next range is last

    @property
    def done(self) -> bool:
        return not self._todo

    @property
    def unsettled(self) -> int:
        """Rows neither stored nor refused yet."""
        return sum(stop - start for start, stop in self._todo)

    def next_range(self) -> Range | None:
        return self._todo[-1] if self._todo else None

    def stored_next(self) -> None:
        start, stop = self._todo.pop()
        self.stored += stop - start

    def refused_next(self, exc: PermanentError) -> None:
        start, stop = self._todo.pop()
        if isinstance(exc, InvalidData) and stop - start > 1:
            middle = (start + stop) // 2
            self._todo += [(middle, stop), (start, middle)]
            return
        ranges = [(start, stop)]
        if not isinstance(exc, InvalidData):  # the statement, not the rows: nothing else would go in
            ranges += self._todo
            self._todo = []
        refusal = self.refusals.get(exc.error_type)
        if refusal is None:
            refusal = self.refusals[exc.error_type] = Refusal(exc.error_type, str(exc))
        for first, end in ranges:
            refusal.rows.extend(range(first, end))

    def refused_rows(self) -> list[int]:
        return sorted(row for refusal in self.refusals.values() for row in refusal.rows)

    def failures(self, where: str = "") -> list[PartialFailure]:
        suffix = f"; kept in {where}" if where else ""
        return [PartialFailure(len(r.rows), r.error_type,
                               f"{len(r.rows)} of {self.rows} rows refused: {r.reason}{suffix}")
                for r in self.refusals.values()]


async def run(plan: RowIsolation, insert: Callable[[int, int], Awaitable[None]]) -> None:
    """Insert the plan's ranges until none is left; a retryable error propagates (plan kept)."""
    while (rows := plan.next_range()) is not None:
        plan.inserts += 1
        try:
            await insert(*rows)
        except PermanentError as exc:
            plan.refused_next(exc)
        else:
            plan.stored_next()


R = TypeVar("R", bound=Sized)  # the rows a batch becomes, as the destination's insert takes them


class IsolatingExporter(QueuedExporter[B], Generic[B, R]):
    """A queued exporter whose destination takes a batch as one all-or-nothing insert of rows.

    Subclasses give `prepare` (the batch's rows, built once per batch), `row_count` (how many
    rows that is), `insert_rows` (insert rows [start, stop) of them) and `refused_batch` (a batch
    of only the given rows, for the dead-letter file). `dead_letters` is set by the subclass.
    """

    dead_letters: DeadLetters | None = None

    def __init__(self, settings: Settings, config: ExporterHelperConfig) -> None:
        super().__init__(settings, config)
        self._plans: dict[int, tuple[B, R, RowIsolation]] = {}

    async def prepare(self, batch: B) -> R:
        raise NotImplementedError

    def row_count(self, rows: R) -> int:
        return len(rows)

    async def insert_rows(self, rows: R, start: int, stop: int) -> None:
        raise NotImplementedError

    def refused_batch(self, batch: B, indices: list[int]) -> Batch:
        raise NotImplementedError

    async def send_rows(self, batch: B) -> list[PartialFailure]:
        """Store every row of `batch` that the destination takes; the refused ones are dead-lettered."""
        entry = self._plans.get(id(batch))
        if entry is None or entry[0] is not batch:
            try:
                rows = await self.prepare(batch)
            except (asyncio.CancelledError, RetryableError):
                raise
            except Exception as exc:  # building rows is a function of the data: a retry would fail alike
                return await asyncio.get_running_loop().run_in_executor(None, self._unpreparable, batch, exc)
            entry = self._plans[id(batch)] = (batch, rows, RowIsolation(self.row_count(rows)))
        _, rows, plan = entry

        async def insert(start: int, stop: int) -> None:
            await self.insert_rows(rows, start, stop)

        await run(plan, insert)
        del self._plans[id(batch)]
        if not plan.refusals:
            return []
        return await asyncio.get_running_loop().run_in_executor(None, self._settle, batch, plan)  # file I/O

    def _settle(self, batch: B, plan: RowIsolation) -> list[PartialFailure]:
        if not plan.refusals:
            return []
        where = ""
        if self.dead_letters is not None:
            reasons = "; ".join(f"{r.error_type}: {r.reason}" for r in plan.refusals.values())
            where = self.dead_letters.keep(self.refused_batch(batch, plan.refused_rows()), reasons)
        return plan.failures(where)

    def _unpreparable(self, batch: B, exc: Exception) -> list[PartialFailure]:
        reason = f"cannot build the rows of the batch: {type(exc).__name__}: {exc}"
        where = self.dead_letters.keep(batch, reason) if self.dead_letters is not None else ""
        suffix = f"; kept in {where}" if where else ""
        return [PartialFailure(self.item_count(batch), "invalid_data", reason + suffix)]

    # -- the helper's hooks for a batch that never finished (retries exhausted, shutdown) ----
    def unsent(self, batch: B) -> int:
        entry = self._plans.get(id(batch))
        return entry[2].unsettled if entry is not None and entry[0] is batch else super().unsent(batch)

    def settled(self, batch: B) -> None:
        """A batch the helper gave up on: its stored rows count as sent, its refused rows are kept."""
        entry = self._plans.get(id(batch))
        if entry is None or entry[0] is not batch:
            return
        del self._plans[id(batch)]
        plan = entry[2]
        self.count_sent(plan.stored)
        for failure in self._settle(batch, plan):
            self.count_failed(failure.rejected, failure.error_type, failure.reason)
