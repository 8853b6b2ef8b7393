"""The component contract: every component type is a config model, a factory and the component.

A receiver pushes batches into the consumer the graph gives it. A processor gets the next
consumer at construction and calls `await self.next.consume(batch)`. An exporter ends a
pipeline. Components raise `pipeline.errors.Refused` (retryable) or `PermanentError` from
`consume`; the receiver turns those into protocol status codes.
"""
from __future__ import annotations

import builtins
import enum
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from pipeline.clock import SYSTEM_CLOCK, Clock
from pipeline.pdata.batch import Batch

if TYPE_CHECKING:
    from pipeline.host import Host

TYPE_PATTERN = re.compile(r"^[a-zA-Z][0-9a-zA-Z_]{0,62}$")


class Kind(str, enum.Enum):
    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    EXTENSION = "extension"
    CONNECTOR = "connector"

    @property
    def section(self) -> str:
        return self.value + "s"


class Signal(str, enum.Enum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"
    EVENTS = "events"


class StrictConfig(BaseModel):
    """Base of every component config: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, order=True)
class ComponentID:
    """`type[/name]`, as in otelcol."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> "ComponentID":
        type_, _, name = str(text).partition("/")
        if not TYPE_PATTERN.match(type_):
            raise ValueError(f"invalid component id {text!r}: the type must match {TYPE_PATTERN.pattern}")
        if "/" in str(text) and not name.strip():
            raise ValueError(f"invalid component id {text!r}: the name after '/' is empty")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


class Consumer(Protocol):
    async def consume(self, batch: Batch) -> None:
        """Take `batch`, or raise `Refused` (retryable: nothing of it was kept here, unless
        `retry_consumer` says which part still wants it) or `PermanentError` (never retried)."""
        ...


# The batch type a processor, exporter or connector takes: its factory's `signals` say which
# pipelines it is in, so the graph only ever gives it that type.
B = TypeVar("B", bound=Batch)


class Component:
    """Lifecycle shared by every component."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        self.id = settings.id
        self.log = settings.logger

    async def start(self, host: "Host") -> None:
        """Begin work (bind ports, start tasks). Default: nothing to do."""

    async def shutdown(self, deadline: float | None = None) -> None:
        """Stop work, flushing what was accepted, by `deadline` (time.monotonic()) if given."""


class Receiver(Component):
    """Takes data in from outside and pushes it to the consumer of each signal it serves."""

    def __init__(self, settings: "Settings") -> None:
        super().__init__(settings)
        self.consumers: dict[Signal, Consumer] = {}

    def set_consumer(self, signal: Signal, consumer: Consumer) -> None:
        """Point the receiver at a (new) consumer; used at build time and on reload."""
        self.consumers[signal] = consumer

    def accepts(self, signal: Signal) -> bool:
        """`pipeline.contracts.SignalFilter`: a receiver that can feed only some pipeline types
        (by its config, e.g. kafka's `signal`) answers False for the others. Default: all."""
        return True


class Processor(Component, Generic[B]):
    """One stage of one pipeline: takes a batch, hands on (changed, merged or new) batches to `next`.

    The graph counts every processor's items in and out (`pipeline.processorhelper`), so a
    processor counts only what is its own (its refusals, its sizes). A refusal by `next`
    propagates unless the processor keeps the batch and says so in its docstring."""

    def __init__(self, settings: "Settings", next_consumer: Consumer) -> None:
        super().__init__(settings)
        self.next = next_consumer

    async def consume(self, batch: B) -> None:
        await self.next.consume(batch)


class Exporter(Component, Generic[B]):
    async def consume(self, batch: B) -> None:
        raise NotImplementedError


class Connector(Receiver, Generic[B]):
    """Both ends at once, as in otelcol: an exporter of the pipelines that list it under
    `exporters` (it consumes their batches) and a receiver of the pipelines that list it
    under `receivers` (it emits into them), e.g. spans in, trigger events out."""

    async def consume(self, batch: B) -> None:
        raise NotImplementedError

    def take_state_from(self, previous: Connector[Any]) -> None:
        """On reload, carry windowed state over from the instance this one replaces."""


@dataclass
class Settings:
    """What a factory gets besides its config: its id, the signal (processors) and a logger."""

    id: ComponentID
    kind: Kind
    signal: Signal | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("agentdbg"))
    clock: Clock = SYSTEM_CLOCK  # what the component reads time from and sleeps on; tests pass a ManualClock

    @classmethod
    def make(cls, kind: Kind, cid: ComponentID, signal: Signal | None = None) -> "Settings":
        logger = logging.getLogger(f"agentdbg.{kind.value}.{cid}")
        return cls(id=cid, kind=kind, signal=signal, logger=logger)


CreateFn = Callable[..., Any]


@dataclass(frozen=True)
class Factory:
    """Registered under its type name; `create` builds the component from settings and config.

    Receivers, exporters, connectors and extensions: `create(settings, config)`.
    Processors: `create(settings, config, next_consumer)`. A connector consumes `signals`
    and emits `emits`.
    """

    type: str
    kind: Kind
    config_model: builtins.type[BaseModel]  # `type` here is the field above
    create: CreateFn
    signals: frozenset[Signal] = frozenset({Signal.TRACES})
    description: str = ""
    emits: frozenset[Signal] = frozenset()
