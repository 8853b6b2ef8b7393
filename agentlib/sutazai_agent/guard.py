"""`circuit_breaker`: the breaker in the agent's call path, as a decorator or a context manager,
for sync and async code.

    @circuit_breaker(failure_threshold=5, recovery_timeout=30, fallback_model="tinyllama")
    async def ask(prompt: str, model: str = "llama3.1:8b") -> str: ...

Each call is routed by the local state machine (`breaker.py`) with the daemon's decision for
the same target (`name`, a breaker of the safety processor's config) as a floor. The call goes
to the function with `model=<tier's model>` when it takes a `model` keyword and is not on the
primary; a tier with an entry in `fallbacks` (e.g. `{"cache_only": read_cache}`) calls that
function instead. Inside, `current_call()` says where the call went.

What it promises: deciding where a call goes reads memory only (the daemon's decisions arrive on
the feed's thread), so a slow or dead daemon never delays a call; an async call is cut at
`timeout` seconds (a `TimeoutError`, counted as a failure); a sync one relies on its own client's
timeout. Each call is one span (`breaker <name>`: CLIENT with `peer.service` when `dependency` is
given, so the daemon's dependency detector sees the agent's own timeouts) carrying
`sutazai.breaker.{name, tier, model, state, source, reason, probe}`: which tier served it and
why. A failure also sets the span's error status and `error.type` (the exception's class).
Exceptions outside `failure_on`, or listed in `ignore`, pass through without counting.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from sutazai_agent import telemetry
from sutazai_agent.breaker import DEFAULT_CHAIN, NO_DECISION, BreakerState, Remote, Route, fallback_tiers
from sutazai_agent.calls import is_async, takes_model, with_model
from sutazai_agent.clock import SYSTEM, Clock
from sutazai_agent.feed import DecisionFeed

F = TypeVar("F", bound=Callable[..., Any])
_current: contextvars.ContextVar["Call | None"] = contextvars.ContextVar("sutazai_breaker_call", default=None)


@dataclass(slots=True)
class Call:
    """One guarded call: where it went, and its span."""

    breaker: "CircuitBreaker"
    route: Route
    span: trace.Span
    token: contextvars.Token["Call | None"] | None = None
    scope: contextvars.Token[Context] | None = None  # made the span current for the call's body

    @property
    def model(self) -> str | None:
        """The tier's model (None: the primary, the function's own default)."""
        return self.route.model


def current_call() -> Call | None:
    """The guarded call running in this context, if any."""
    return _current.get()


class CircuitBreaker:
    def __init__(self, name: str = "ollama_model", *, failure_threshold: int = 5, recovery_timeout: float = 30.0,
                 fallback_model: str | None = "tinyllama", fallback_chain: tuple[str, ...] = DEFAULT_CHAIN,
                 half_open_probes: int = 1, timeout: float | None = None, dependency: str | None = None,
                 fallbacks: Mapping[str, Callable[..., Any]] | None = None,
                 failure_on: tuple[type[BaseException], ...] = (Exception,),
                 ignore: tuple[type[BaseException], ...] = (), feed: DecisionFeed | None = None,
                 clock: Clock = SYSTEM, tracer: trace.Tracer | None = None) -> None:
        self.name = name
        self.state = BreakerState(fallback_tiers(fallback_model, fallback_chain), failure_threshold,
                                  recovery_timeout, half_open_probes, clock)
        self.timeout = timeout
        self.dependency = dependency
        self.fallbacks = dict(fallbacks or {})
        self.failure_on, self.ignore = failure_on, ignore
        self._feed = feed
        self._tracer = tracer
        self.last: Route | None = None  # the latest call's route (display; concurrent code: current_call())
        self._span_name = f"breaker {name}"
        self._kind = SpanKind.CLIENT if dependency else SpanKind.INTERNAL
        self._attributes = {"sutazai.breaker.name": name, **({"peer.service": dependency} if dependency else {})}

    # -- routing ---------------------------------------------------------------------------------
    @property
    def feed(self) -> DecisionFeed | None:
        if self._feed is not None:
            return self._feed
        agent = telemetry.current()
        return agent.feed if agent is not None else None

    def remote(self) -> Remote:
        """The daemon's decision for this breaker, as a tier of this breaker's chain."""
        feed = self.feed
        view = feed.breaker(self.name) if feed is not None else None
        if not view or not view.get("fallback"):
            return NO_DECISION
        fallback = str(view["fallback"])
        reason = str(view.get("reason") or f"daemon: breaker {self.name} {view.get('state')}, on {fallback}")
        tiers = self.state.tiers
        if fallback in tiers:
            return Remote(tiers.index(fallback) + 1, str(view.get("state")), reason)
        return Remote(max(1, int(view.get("tier") or 1)), str(view.get("state")), reason, model=fallback)

    def begin(self) -> Call:
        """Route a call, start its span and make both current (`end` undoes it)."""
        route = self.last = self.state.route(self.remote())
        span = (self._tracer or telemetry.tracer()).start_span(self._span_name, kind=self._kind, attributes={
            **self._attributes, "sutazai.breaker.tier": route.tier, "sutazai.breaker.model": route.model or "primary",
            "sutazai.breaker.state": route.state, "sutazai.breaker.source": route.source,
            "sutazai.breaker.reason": route.reason, "sutazai.breaker.probe": route.probe})
        # A span that records is the parent of what the call does; a no-op one is not attached.
        scope = context.attach(trace.set_span_in_context(span)) if span.is_recording() else None
        call = Call(self, route, span, scope=scope)
        call.token = _current.set(call)
        return call

    def end(self, call: Call, error: BaseException | None) -> None:
        if call.token is not None:
            _current.reset(call.token)
        if call.scope is not None:
            context.detach(call.scope)
        counted = error is not None and isinstance(error, self.failure_on) and not isinstance(error, self.ignore)
        if counted:
            assert error is not None
            kind = type(error).__qualname__
            self.state.failed(call.route, kind)
            call.span.set_attribute("error.type", kind)
            call.span.record_exception(error)
            call.span.set_status(Status(StatusCode.ERROR, str(error)[:200] or kind))
        elif error is None:
            self.state.succeeded(call.route)
        call.span.end()

    def _invoke(self, fn: Callable[..., Any], call: Call, args: tuple[Any, ...], kwargs: dict[str, Any],
                passes: dict[int, bool]) -> Any:
        target = self.fallbacks.get(call.model or "", fn) if self.fallbacks else fn
        return target(*args, **with_model(kwargs, call.model, passes[id(target)]))

    # -- decorator -------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        functions: list[Callable[..., Any]] = [fn, *self.fallbacks.values()]
        passes = {id(f): takes_model(f) for f in functions}

        if is_async(fn):
            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                async with self as call:
                    result = self._invoke(fn, call, args, kwargs, passes)
                    if asyncio.iscoroutine(result):
                        result = await (asyncio.wait_for(result, self.timeout) if self.timeout else result)
                    return result
            return guarded_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            call = self.begin()  # not `with self`: the hot path (measured in benchmarks/bench_agent.py)
            try:
                result = self._invoke(fn, call, args, kwargs, passes)
            except BaseException as exc:
                self.end(call, exc)
                raise
            self.end(call, None)
            return result
        return guarded  # type: ignore[return-value]

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Call:
        return self.begin()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        call = _current.get()
        if call is not None and call.breaker is self:
            self.end(call, error)

    async def __aenter__(self) -> Call:
        return self.begin()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        self.__exit__(kind, error, tb)


def circuit_breaker(name: str = "ollama_model", **options: Any) -> CircuitBreaker:
    """A `CircuitBreaker` (see the module docstring); use it as `@circuit_breaker(...)` or
    `with breaker as call:` / `async with breaker as call:` (`call.model` is the tier's model)."""
    return CircuitBreaker(name, **options)
