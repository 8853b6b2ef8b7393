"""The local circuit breaker's state machine (Hystrix style), with no I/O: the guard in
`guard.py` asks it where each call goes and tells it how the call went.

Tiers: 0 is the primary, then the fallbacks in order: the breaker's own `fallback_model`, then
the entries of the fallback chain after it (`primary → tinyllama → cache_only → offline_mode`
by default), the same order the daemon's breakers step through.

- CLOSED (on the primary): `failure_threshold` consecutive failures open it one tier down.
- OPEN (on a fallback tier): calls go to that tier; its own consecutive failures step it one
  more tier down. After `recovery_timeout` it is HALF_OPEN.
- HALF_OPEN: the next `half_open_probes` calls are probes of the tier above; the others stay
  on the fallback. All probes succeeding moves it one tier up (CLOSED when that is the primary,
  else OPEN there, to probe the next tier up one `recovery_timeout` later); one failing sends
  it back to OPEN on the same tier, with a fresh timeout.

The daemon's decision for the same target (`remote`) is a floor: a call never goes to a tier
above the daemon's, and a probe above it is not made (the fleet saw the primary fail).
"""
from __future__ import annotations

from typing import NamedTuple

from sutazai_agent.clock import SYSTEM, Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
DEFAULT_CHAIN = ("tinyllama", "cache_only", "offline_mode")


def fallback_tiers(fallback_model: str | None, chain: tuple[str, ...] = DEFAULT_CHAIN) -> tuple[str, ...]:
    """The fallbacks in order: `fallback_model`, then the chain's entries after it (a fallback
    that is not in the chain is the only one; none given: the whole chain)."""
    if not fallback_model:
        return tuple(chain)
    if fallback_model not in chain:
        return (fallback_model,)
    return tuple(chain[chain.index(fallback_model):])


class Remote(NamedTuple):  # tuples: one is made per call, and a frozen dataclass costs ~5x more
    """The daemon's current decision for a target: its tier here and why."""

    tier: int = 0
    state: str = CLOSED
    reason: str = ""
    model: str | None = None  # the daemon's fallback, when it is not one of this breaker's tiers


NO_DECISION = Remote()


class Route(NamedTuple):
    """Where one call goes: `tier` (0 primary), `model` (None: the primary), and why."""

    tier: int
    model: str | None
    state: str          # the breaker's state when the call was routed
    source: str         # local | daemon
    reason: str
    probe: bool = False


class BreakerState:
    def __init__(self, tiers: tuple[str, ...], failure_threshold: int = 5, recovery_timeout: float = 30.0,
                 half_open_probes: int = 1, clock: Clock = SYSTEM) -> None:
        if failure_threshold < 1 or half_open_probes < 1 or recovery_timeout < 0:
            raise ValueError("failure_threshold and half_open_probes must be >= 1, recovery_timeout >= 0")
        self.tiers = tiers
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_probes = half_open_probes
        self.clock = clock
        self.state = CLOSED
        self.tier = 0
        self.failures = 0
        self.opened_at = 0.0
        self.probes_out = 0
        self.probe_successes = 0
        self.remote_failures = 0  # consecutive failures on a tier the daemon chose, above this one
        self.why = "closed: on the primary"

    def model(self, tier: int) -> str | None:
        return self.tiers[min(tier, len(self.tiers)) - 1] if tier > 0 and self.tiers else None

    def route(self, remote: Remote | None = None) -> Route:
        """Where the next call goes (a probe slot is taken when it is a probe)."""
        remote = remote or NO_DECISION
        if self.state == OPEN and self.clock.monotonic() - self.opened_at >= self.recovery_timeout:
            self.state, self.probes_out, self.probe_successes = HALF_OPEN, 0, 0
        tier, probe, reason = self.tier, False, self.why
        if self.state == HALF_OPEN and self.probes_out < self.half_open_probes and remote.tier < self.tier:
            tier, probe = self.tier - 1, True
            self.probes_out += 1
            reason = f"half-open: probing {self.model(tier) or 'the primary'}"
        if remote.tier > tier:
            return Route(remote.tier, remote.model or self.model(remote.tier), remote.state, "daemon", remote.reason)
        return Route(tier, self.model(tier), self.state, "local", reason, probe)

    def succeeded(self, route: Route) -> None:
        if route.probe:
            self.probes_out = max(0, self.probes_out - 1)
            self.probe_successes += 1
            if self.probe_successes >= self.half_open_probes:
                self._step_up()
        elif route.tier == self.tier:
            self.failures = 0
        elif route.tier > self.tier:
            self.remote_failures = 0

    def failed(self, route: Route, error: str) -> None:
        now = self.clock.monotonic()
        if route.probe:
            self.probes_out = max(0, self.probes_out - 1)
            self.state, self.opened_at = OPEN, now
            self.why = f"open: the probe of {self.model(route.tier) or 'the primary'} failed ({error})"
            return
        if route.tier < self.tier:
            return  # a call routed before the last transition: it says nothing of this tier
        if route.tier > self.tier:  # the daemon's tier: it is this breaker's too once it failed as often
            self.remote_failures += 1
            if self.remote_failures < self.failure_threshold:
                return
            self.tier, self.state, self.opened_at = route.tier, OPEN, now
            self.failures, self.remote_failures = self.failure_threshold - 1, 0
            self.why = f"open: the daemon's {self.model(self.tier)} failed too ({error})"
        self.failures += 1
        if self.failures >= self.failure_threshold and self.tier < len(self.tiers):
            self.tier += 1
            self.state, self.opened_at, self.failures = OPEN, now, 0
            self.why = (f"open: {self.failure_threshold} consecutive failures ({error}); "
                        f"on {self.model(self.tier)}")

    def _step_up(self) -> None:
        self.tier -= 1
        self.failures, self.probes_out, self.probe_successes = 0, 0, 0
        if self.tier == 0:
            self.state, self.why = CLOSED, "closed: the probe of the primary succeeded"
        else:
            self.state, self.opened_at = OPEN, self.clock.monotonic()
            self.why = f"open: recovered to {self.model(self.tier)}; probing the tier above next"
