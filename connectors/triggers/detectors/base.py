"""The detector contract and what every detector config shares (severity, overrides)."""
from __future__ import annotations

from typing import Any, ClassVar, Collection, Container, Generic, Hashable, Iterable, Literal, TypeVar

from pydantic import Field, PositiveInt

from connectors.triggers import checkpoint_state
from connectors.triggers.checkpoint_state import Part
from connectors.triggers.event import Observation
from pipeline.component import StrictConfig
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces


class Override(StrictConfig):
    """Per-subject threshold: the first override whose `match` is contained in the subject wins."""

    match: dict[str, str | bool]
    threshold: float


Severity = Literal["critical", "warning", "info"]


class DetectorConfig(StrictConfig):
    enabled: bool = True
    severity: Severity = "warning"
    overrides: list[Override] = Field(default_factory=list)


class BoundedConfig(DetectorConfig):
    """A detector that keeps state per subject."""

    # The most subjects (keys of windowed state) the detector holds at once; its docstring says
    # what it does with the next one. Each eviction is counted in
    # agentdbg_trigger_state_evictions_total{detector, reason}.
    max_subjects: PositiveInt = 5000


C = TypeVar("C", bound="DetectorConfig", covariant=True)  # the detector's own config model


class Detector(Generic[C]):
    kind: ClassVar[str]
    # Span attributes the detector reads (typed, via SpanColumns.attributes): the connector has
    # each batch capture them, so the batch's shared attribute pass fills them.
    attribute_keys: tuple[str, ...] = ()
    # Attributes computed from the config in __init__: a reload keeps the new instance's.
    config_derived: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: C) -> None:
        self.config = config
        self.peers: dict[str, Detector[Any]] = {}
        # Items let go of because state is bounded, by reason, since the connector last counted
        # them (agentdbg_trigger_state_evictions_total{detector, reason}).
        self.drops: dict[str, int] = {}
        # The episode keys currently open (the connector's tracker), or None when unknown (a
        # detector used on its own): a detector may leave out observations of subjects that
        # neither fire nor have an open episode, which the tracker would only drop.
        self.open_episodes: Container[str] | None = None

    def attach(self, peers: dict[str, Detector[Any]]) -> None:
        """Called once the connector has built every detector: `{kind: detector}` (e.g. the
        health snapshot reads the memory detector's latest readings)."""
        self.peers = peers

    def evict(self, reason: str, count: int = 1) -> None:
        """Count `count` items (subjects, traces, calls ...) not kept because state is bounded."""
        if count:
            self.drops[reason] = self.drops.get(reason, 0) + count

    def admit(self: Detector[BoundedConfig], state: Collection[Any], key: Hashable, reason: str = "subject_untracked",
              pending: int = 0) -> bool:
        """Whether `key` may be kept in `state` (a dict or set of subjects): it is there already,
        or there is room under `max_subjects` (with `pending` new keys of this batch not yet in
        `state`). A new key past the bound is counted under `reason`."""
        if key in state or len(state) + pending < self.config.max_subjects:
            return True
        self.evict(reason)
        return False

    def episode_open(self, key: str) -> bool:
        """Whether the episode of `key` (an Observation.key) is open; True when not known."""
        return self.open_episodes is None or key in self.open_episodes

    def threshold_for(self, subject: dict[str, Any], default: float) -> float:
        for override in self.config.overrides:
            if all(str(subject.get(k)).lower() == str(v).lower() for k, v in override.match.items()):
                return override.threshold
        return default

    def prepare(self) -> None:
        """Called once when the connector starts (in a worker thread): load now what the hot path
        would otherwise load on its first batch, so no batch pays a one-time cost."""

    def observe(self, batch: Traces) -> None:
        """Hot path: fold one traces batch into partial aggregates. Must be cheap."""

    def observe_metrics(self, batch: Metrics) -> None:
        """Hot path for OTLP metrics batches (memory, CPU)."""

    def evaluate(self, now: float) -> list[Observation]:
        """Off the hot path: one observation per subject that has data in the window."""
        return []

    def emit(self, now: float, detector: str) -> list[dict[str, Any]]:
        """Finished documents to send as they are, not through episodes (health snapshots)."""
        return []

    def state_parts(self) -> dict[str, Part]:
        """The per-subject containers a checkpoint keeps, by name; {} (the default): the
        detector's state is not checkpointed and starts empty after a restart."""
        return {}

    def snapshot(self) -> dict[Any, dict[str, Any]]:
        """`{subject key: {part: JSON value}}`: what a checkpoint writes, one record per key."""
        return checkpoint_state.gather(self.state_parts())

    def restore(self, entries: dict[Any, dict[str, Any]]) -> None:
        """Merge `snapshot` entries (of a restart, or of the partitions a rebalance assigned)."""
        checkpoint_state.scatter(self.state_parts(), entries)

    def drop(self, keys: Iterable[Any]) -> None:
        """Forget the state of `keys` (the partitions a rebalance took away)."""
        checkpoint_state.drop(self.state_parts(), keys)

    def take_state_from(self, previous: Detector[Any]) -> None:
        """Carry windowed state over a reload; the default keeps everything but the config
        and the peers (the new connector's detectors)."""
        keep = {"config", "peers", "open_episodes", *self.config_derived}
        state = {k: v for k, v in vars(previous).items() if k not in keep}
        vars(self).update(state)
