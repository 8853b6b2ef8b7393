"""The written contracts between components, beside `pipeline.component`'s lifecycle.

Each one is a `typing.Protocol`: a component keeps it by having the methods, and the type
checker holds every implementer and every caller to the signatures below. The graph, the host
and the helpers ask for a contract by its name (`isinstance(x, Storage)`), never by probing
for an attribute.

- `Consumer` (pipeline.component): takes one batch, or raises `Refused` / `PermanentError`.
- `Authenticator` (pipeline.auth): tells who sent a request from its headers.
- `SignalFilter`: a receiver that can feed only some pipeline types says so before it starts.
- `Storage` with `QueueStore`, `LogStore` and `LogSegment`: what an exporter's persistent
  sending queue and the batch processor's write-ahead log need of a storage extension
  (extensions/file_storage.py is the one that exists).
- `QueueOwner`: an exporter whose sending queue may be on disk tells the graph where.
- `PartitionedState` and `PartitionedSource`: a connector whose state is per subject (triggers)
  and the Kafka receiver that feeds it keyed input: on a consumer-group rebalance the state of
  the subjects of the moved partitions is checkpointed and dropped, or restored.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

from pipeline.auth import Authenticator
from pipeline.component import Consumer

if TYPE_CHECKING:
    from pipeline.component import Signal
    from pipeline.pdata.batch import Batch

__all__ = ["Authenticator", "Consumer", "LogSegment", "LogStore", "PartitionedSource", "PartitionedState",
           "QueueOwner", "QueueStore", "SignalFilter", "Storage", "SubjectFilter"]

# Whether a detector subject (`{"service": ..., "dependency": ...}`) is read from the partitions in question.
SubjectFilter = Callable[[Mapping[str, Any]], bool]


@runtime_checkable
class SignalFilter(Protocol):
    """A receiver whose config decides which pipeline types it can start (kafka's `encoding`)."""

    def accepts(self, signal: Signal) -> bool:
        """Whether this receiver, as configured, can feed a pipeline of `signal`.

        Asked by the graph at build time for every pipeline that lists the receiver; a False
        makes the config invalid (the reload is refused, the old graph keeps running), so the
        answer must depend on the config alone, never on a connection. `Receiver` says True.
        """
        ...


class QueueStore(Protocol):
    """One exporter's persistent sending queue: a batch is on disk once `put` returns."""

    directory: Path

    def put(self, batch: Batch) -> Path:
        """Write `batch` durably (as the storage's fsync setting says) before returning its token.

        Raises OSError when it cannot; the exporter then refuses the batch retryably."""
        ...

    def remove(self, token: Path) -> None:
        """Forget a batch that was sent or failed for good; removing twice is not an error."""
        ...

    def recover(self) -> Iterator[tuple[Batch, Path]]:
        """What an earlier run left, oldest first, each with its token. A batch that cannot be
        read is set aside (never deleted) and reported with ValueError."""
        ...


class LogSegment(Protocol):
    """One segment of a write-ahead log: records appended in order, removed as a whole."""

    @property
    def closed(self) -> bool: ...

    def append(self, batch: Batch) -> None:
        """Once this returns the record survives the process being killed; raises OSError when
        the write failed (a torn last record is then ignored on recovery: it was never acked)."""
        ...

    def close(self) -> None:
        """No more records go to this segment; its file stays until `remove`."""
        ...

    def remove(self) -> None:
        """Delete the segment: everything it held was handed on (or given up and counted)."""
        ...


class LogStore(Protocol):
    """A processor's write-ahead log, shared by the old and new processor across a reload."""

    directory: Path

    def open_segment(self) -> LogSegment: ...

    def take_recovered(self) -> list[tuple[list[Batch], LogSegment]]:
        """The segments an earlier run left, oldest first, with their batches; given to the first
        caller of the process only. Unreadable segments are set aside and logged, never deleted."""
        ...

    def release(self) -> None:
        """This user is done with the log (its segments stay on disk)."""
        ...


@runtime_checkable
class Storage(Protocol):
    """A storage extension (`file_storage`) that `sending_queue.storage` may name."""

    def open_store(self, owner: str) -> QueueStore:
        """The sending queue of exporter `owner`; its own directory, left as it was found."""
        ...

    def open_log(self, owner: str) -> LogStore:
        """The write-ahead log of `owner` (`<processor id>-<pipeline>`); `release()` it when done."""
        ...


@runtime_checkable
class QueueOwner(Protocol):
    """An exporter whose sending queue may be kept on disk (every `QueuedExporter`)."""

    @property
    def persistent_storage(self) -> str | None:
        """The storage extension id its sending queue is kept in, None when it is in memory.

        A processor before such an exporter must not answer OK for data it holds only in memory
        (the batch processor keeps a write-ahead log in the same storage)."""
        ...


@runtime_checkable
class PartitionedState(Protocol):
    """A consumer whose state is kept per subject and whose keyed input comes from Kafka
    partitions (the triggers connector of an evaluator): the state follows the partitions."""

    def partitioned(self) -> None:
        """Called at build time by the receiver that will feed it: its state is to be restored per
        assigned partition (`partitions_assigned`), not all of it at start."""
        ...

    async def partitions_assigned(self, owns: SubjectFilter) -> None:
        """Restore the checkpointed state of the subjects `owns` takes: their input is read here now.
        Called before any record of those partitions is delivered."""
        ...

    async def partitions_revoked(self, owns: SubjectFilter) -> None:
        """Checkpoint, then forget, the state of the subjects `owns` takes: their input is read
        elsewhere from now on. Called after the last record of those partitions was delivered."""
        ...


@runtime_checkable
class PartitionedSource(Protocol):
    """A receiver that reads keyed partitions (kafka with `key_family`): the graph hands it the
    `PartitionedState` consumers of the pipelines it feeds."""

    def set_partitioned_state(self, owners: list[PartitionedState]) -> None: ...
