"""`throttle`: a token bucket in the call path that honours the daemon's throttle decisions.

    @throttle(target="service=planner", mode="wait")
    def ask(prompt: str, model: str = "gpt-4o") -> str: ...

While the daemon throttles `target` (a cost subject key: `service=<name>` by default, the
configured service; `agent=<name>` for a per-agent budget), calls pass at `rate_per_minute` on
average with bursts of at most `burst_per_second`, and a function that takes a `model` keyword
is handed the decision's `prefer` model (`fallback`). Local limits given here apply as well
(the stricter wins). When the throttle is lifted (`unthrottle`), calls go unchecked again.

`mode="wait"` makes a call wait its turn (sync: the clock's sleep; async: `asyncio.sleep`),
at most `max_wait` seconds (longer: `Throttled`, and its turn is given back); `mode="raise"`
raises `Throttled` (with `retry_after`) at once when no token is there. The wait is recorded
on the current span (`sutazai.throttle.waited_s`, `.rate_per_minute`, `.source`). Like the
breaker, it reads the daemon's state from memory: a dead daemon means local limits only.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Literal, TypeVar

from opentelemetry import trace

from sutazai_agent import telemetry
from sutazai_agent.bucket import TokenBucket
from sutazai_agent.calls import is_async, takes_model, with_model
from sutazai_agent.clock import SYSTEM, Clock
from sutazai_agent.feed import DecisionFeed

F = TypeVar("F", bound=Callable[..., Any])
Limits = tuple[float, float]  # (rate_per_minute, burst_per_second)


class Throttled(Exception):
    """A call refused by the throttle; `retry_after` seconds until it would pass."""

    def __init__(self, target: str, retry_after: float) -> None:
        super().__init__(f"{target} is throttled: retry after {retry_after:.3f}s")
        self.target = target
        self.retry_after = retry_after


class Throttle:
    def __init__(self, target: str | None = None, *, rate_per_minute: float | None = None,
                 burst_per_second: float | None = None, mode: Literal["wait", "raise"] = "wait",
                 max_wait: float | None = None, feed: DecisionFeed | None = None, clock: Clock = SYSTEM) -> None:
        if mode not in ("wait", "raise"):
            raise ValueError("mode is 'wait' or 'raise'")
        self._target = target
        self.local: Limits | None = None
        if rate_per_minute is not None:
            self.local = (rate_per_minute, burst_per_second or max(1.0, rate_per_minute / 60.0))
        self.mode, self.max_wait = mode, max_wait
        self._feed, self.clock = feed, clock
        self.bucket: TokenBucket | None = None
        self._limits: Limits | None = None

    @property
    def target(self) -> str:
        if self._target:
            return self._target
        agent = telemetry.current()
        service = agent.provider.resource.attributes.get("service.name") if agent is not None else None
        return f"service={service or 'unknown_service'}"

    def decision(self) -> dict[str, Any] | None:
        feed = self._feed
        if feed is None:
            agent = telemetry.current()
            feed = agent.feed if agent is not None else None
        return feed.throttle(self.target) if feed is not None else None

    def limits(self) -> tuple[Limits | None, str | None, str]:
        """The limits in force (None: unlimited), the preferred model, and where they come from."""
        decided = self.decision()
        if not decided:
            return self.local, None, "local"
        remote = (float(decided["rate_per_minute"]), float(decided.get("burst_per_second") or 1))
        prefer = decided.get("fallback") or None
        if self.local is None:
            return remote, prefer, "daemon"
        return (min(self.local[0], remote[0]), min(self.local[1], remote[1])), prefer, "daemon"

    def _bucket(self, limits: Limits) -> TokenBucket:
        if self.bucket is None:
            self.bucket = TokenBucket(*limits, clock=self.clock)
        elif limits != self._limits:
            self.bucket.configure(*limits)
        self._limits = limits
        return self.bucket

    def admit(self) -> tuple[float, str | None]:
        """Take a turn: (seconds to wait first, model to prefer); raises `Throttled` when refused."""
        limits, prefer, source = self.limits()
        if limits is None:
            return 0.0, None
        bucket = self._bucket(limits)
        if self.mode == "raise":
            retry_after = bucket.try_take()
            if retry_after > 0:
                raise Throttled(self.target, retry_after)
            wait = 0.0
        else:
            wait = bucket.reserve()
            if self.max_wait is not None and wait > self.max_wait:
                bucket.tokens += 1.0  # give the turn back: this call does not take it
                raise Throttled(self.target, wait)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"sutazai.throttle.waited_s": wait, "sutazai.throttle.rate_per_minute": limits[0],
                                 "sutazai.throttle.source": source})
        return wait, prefer

    # -- decorator -------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        passes = takes_model(fn)
        if is_async(fn):
            @functools.wraps(fn)
            async def throttled_async(*args: Any, **kwargs: Any) -> Any:
                async with self as prefer:
                    return await fn(*args, **with_model(kwargs, prefer, passes))
            return throttled_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def throttled(*args: Any, **kwargs: Any) -> Any:
            with self as prefer:
                return fn(*args, **with_model(kwargs, prefer, passes))
        return throttled  # type: ignore[return-value]

    # -- context manager: `with limiter as prefer:` (the model to prefer, None for the caller's own)
    def __enter__(self) -> str | None:
        wait, prefer = self.admit()
        if wait > 0:
            self.clock.sleep(wait)
        return prefer

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> str | None:
        wait, prefer = self.admit()
        if wait > 0:
            await self.clock.asleep(wait)
        return prefer

    async def __aexit__(self, *exc: object) -> None:
        return None


def throttle(target: str | None = None, **options: Any) -> Throttle:
    """A `Throttle` (see the module docstring), as a decorator or a (async) context manager."""
    return Throttle(target, **options)
