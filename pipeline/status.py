"""Component status, the way otelcol's component status reporting feeds health check v2.

Every component instance of the running graph has a status: `StatusStarting` → `StatusOK`
at start, `StatusStopping` → `StatusStopped` at shutdown, and in between what the component
reports through its `StatusReporter`: an exporter reports `StatusRecoverableError` (with the
error) when a send fails and will be retried, and `StatusOK` when a send succeeds again. A
`StatusPermanentError` means the component cannot work without someone changing something.

A pipeline's status is the most severe of its components' (otelcol's aggregation: fatal,
then starting, stopping, permanent, recoverable, then OK); the daemon's is the most severe
of its pipelines'. Whether that counts as unhealthy is a `HealthRule` (health_check's
`component_health`): permanent errors at once, recoverable errors once they have lasted
`recovery_duration`. A recoverable error's `since` is when the current run of errors began,
so an exporter failing on every retry does not restart the clock; its last error and when
it happened are kept beside it.

The registry is process-wide, like the daemon's own metrics, and outlives reloads: a
component the new graph reuses keeps its status.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol

from pipeline.component import ComponentID, Kind, Signal
from pipeline.telemetry.redact import redact_text


class Status(str, enum.Enum):
    STARTING = "StatusStarting"
    OK = "StatusOK"
    RECOVERABLE_ERROR = "StatusRecoverableError"
    PERMANENT_ERROR = "StatusPermanentError"
    FATAL_ERROR = "StatusFatalError"
    STOPPING = "StatusStopping"
    STOPPED = "StatusStopped"


ERRORS = (Status.RECOVERABLE_ERROR, Status.PERMANENT_ERROR, Status.FATAL_ERROR)
# otelcol's order for mixed statuses (permanent errors before recoverable ones).
_SEVERITY = (Status.FATAL_ERROR, Status.STARTING, Status.STOPPING, Status.STOPPED,
             Status.PERMANENT_ERROR, Status.RECOVERABLE_ERROR, Status.OK)


@dataclass(frozen=True)
class StatusEvent:
    status: Status
    since: float                      # when this status began (time.time())
    error: str | None = None          # the last error, for the error statuses
    error_time: float | None = None   # when it was reported


class StatusReporter(Protocol):
    """What a component calls to say how it is doing; cheap enough to call on every send."""

    def ok(self) -> None: ...

    def recoverable_error(self, error: str) -> None: ...

    def permanent_error(self, error: str) -> None: ...


# (kind, id, scope): an exporter instance is per signal, a processor per pipeline.
InstanceKey = tuple[Kind, ComponentID, str]


Scope = Signal | str | None  # an exporter's signal, a processor's pipeline name, or nothing


def instance_key(kind: Kind, cid: ComponentID, scope: Scope = None) -> InstanceKey:
    value = scope.value if isinstance(scope, Signal) else scope
    return kind, cid, "" if value is None else value


def label(key: InstanceKey) -> str:
    """`exporter:otlp/tempo`, as health check v2 names components."""
    return f"{key[0].value}:{key[1]}"


class ComponentStatus:
    """The StatusReporter of one component instance."""

    def __init__(self, registry: "StatusRegistry", key: InstanceKey) -> None:
        self.registry = registry
        self.key = key

    def ok(self) -> None:
        self.registry.set(self.key, Status.OK)

    def recoverable_error(self, error: str) -> None:
        # health and /debug report this text: a URL's credentials in it are masked
        self.registry.set(self.key, Status.RECOVERABLE_ERROR, redact_text(error))

    def permanent_error(self, error: str) -> None:
        self.registry.set(self.key, Status.PERMANENT_ERROR, redact_text(error))


@dataclass(frozen=True)
class HealthRule:
    """When a component counts as unhealthy (health_check's `component_health`)."""

    include_permanent_errors: bool = True
    include_recoverable_errors: bool = True
    recovery_duration: float = 300.0

    def healthy(self, event: StatusEvent, now: float) -> bool:
        if event.status in (Status.FATAL_ERROR, Status.STARTING, Status.STOPPING, Status.STOPPED):
            return False
        if event.status == Status.PERMANENT_ERROR:
            return not self.include_permanent_errors
        if event.status == Status.RECOVERABLE_ERROR and self.include_recoverable_errors:
            return now - event.since < self.recovery_duration
        return True


def aggregate(events: Iterable[StatusEvent]) -> StatusEvent | None:
    """The most severe event; among equals the one that began first (the longest-standing)."""
    ranked = sorted(events, key=lambda e: (_SEVERITY.index(e.status), e.since))
    return ranked[0] if ranked else None


class StatusRegistry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started_at = clock()
        self.events: dict[InstanceKey, StatusEvent] = {}
        self.pipelines: dict[str, tuple[InstanceKey, ...]] = {}

    def reporter(self, kind: Kind, cid: ComponentID, scope: Scope = None) -> ComponentStatus:
        return ComponentStatus(self, instance_key(kind, cid, scope))

    def set(self, key: InstanceKey, status: Status, error: str | None = None) -> None:
        current = self.events.get(key)
        if current is not None and current.status == status:
            if error is not None:  # same run of errors: keep `since`, note the last error
                self.events[key] = replace(current, error=error, error_time=self.clock())
            return
        now = self.clock()
        self.events[key] = StatusEvent(status, now, error, now if error is not None else None)

    def track(self, pipelines: Mapping[str, Iterable[InstanceKey]]) -> None:
        """The running graph's pipelines and their instances; new instances start as Starting.
        Instances no pipeline lists any more are forgotten."""
        self.pipelines = {name: tuple(keys) for name, keys in pipelines.items()}
        live = {key for keys in self.pipelines.values() for key in keys}
        self.events = {key: event for key, event in self.events.items() if key in live}
        for key in live:
            if key not in self.events:
                self.set(key, Status.STARTING)

    def set_all(self, status: Status, only: Status | None = None) -> None:
        """Lifecycle of the whole graph: every tracked instance (only those in `only`, if given)."""
        for key in {k for keys in self.pipelines.values() for k in keys}:
            current = self.events.get(key)
            if only is None or (current is not None and current.status == only):
                self.set(key, status)

    # -- reading -------------------------------------------------------------------------------
    def report(self, rule: HealthRule, verbose: bool = False, pipeline: str | None = None) -> dict[str, Any]:
        """Health check v2's body: the daemon (or one pipeline) with `healthy`, `status`,
        `error`, `status_time`; `components` per pipeline, and per instance when verbose."""
        now = self.clock()
        if pipeline is not None:
            return self._pipeline_view(pipeline, rule, now, verbose=True)
        views = {f"pipeline:{name}": self._pipeline_view(name, rule, now, verbose) for name in self.pipelines}
        overall = aggregate(e for keys in self.pipelines.values() for k in keys if (e := self.events.get(k)))
        body = _event_view(overall, all(v["healthy"] for v in views.values()))
        return {"start_time": _rfc3339(self.started_at), **body, "components": views}

    def healthy(self, rule: HealthRule) -> bool:
        now = self.clock()
        return all(rule.healthy(self.events[k], now) for keys in self.pipelines.values()
                   for k in keys if k in self.events)

    def _pipeline_view(self, name: str, rule: HealthRule, now: float, verbose: bool) -> dict[str, Any]:
        keys = self.pipelines.get(name, ())
        events = {key: self.events[key] for key in keys if key in self.events}
        healthy = {key: rule.healthy(event, now) for key, event in events.items()}
        view = _event_view(aggregate(events.values()), all(healthy.values()))
        if verbose:
            view["components"] = {label(key): _event_view(event, healthy[key]) for key, event in events.items()}
        return view


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat().replace("+00:00", "Z")


class Started(Protocol):
    """What the health line reads from the daemon's host: its status text and start time."""

    started_at: float  # time.time() at start
    status: str


def health_body(host: Started, now: float | None = None) -> dict[str, str]:
    """otelcol's health line (`status`, `upSince`, `uptime`): served by health_check and debug_api alike."""
    uptime = (time.time() if now is None else now) - host.started_at
    return {"status": host.status, "upSince": _rfc3339(host.started_at), "uptime": f"{uptime:.3f}s"}


def _event_view(event: StatusEvent | None, healthy: bool) -> dict[str, Any]:
    if event is None:
        return {"healthy": healthy, "status": Status.STARTING.value, "status_time": None}
    view: dict[str, Any] = {"healthy": healthy, "status": event.status.value, "status_time": _rfc3339(event.since)}
    if event.status in ERRORS and event.error is not None:
        view["error"] = event.error
        view["error_time"] = _rfc3339(event.error_time or event.since)
    return view


registry = StatusRegistry()


def reporter(kind: Kind, cid: ComponentID, scope: Scope = None) -> StatusReporter:
    """The reporter of one component instance in the daemon's registry."""
    return registry.reporter(kind, cid, scope)
