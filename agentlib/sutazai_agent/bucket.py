"""A token bucket: `rate_per_minute` sustained, bursts of at most `burst_per_second`, the two
numbers of the daemon's throttle decisions. No I/O and no sleeping: it says how long a call
must wait, and the throttle (`throttle.py`) waits or raises."""
from __future__ import annotations

from sutazai_agent.clock import SYSTEM, Clock


class TokenBucket:
    def __init__(self, rate_per_minute: float, burst_per_second: float, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.rate = self.capacity = 0.0
        self.tokens = 0.0
        self.updated = clock.monotonic()
        self.configure(rate_per_minute, burst_per_second)

    def configure(self, rate_per_minute: float, burst_per_second: float) -> None:
        """New limits; the tokens saved so far are kept up to the new burst size."""
        if rate_per_minute <= 0 or burst_per_second <= 0:
            raise ValueError("rate_per_minute and burst_per_second must be > 0")
        self._refill()
        first = self.capacity == 0.0
        self.rate, self.capacity = rate_per_minute / 60.0, float(burst_per_second)
        self.tokens = self.capacity if first else min(self.tokens, self.capacity)

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def reserve(self) -> float:
        """Take a token, borrowing against the future when there is none: the seconds the caller
        must wait before its call (0 when it may go at once). Waiters are served in turn."""
        self._refill()
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_take(self) -> float:
        """Take a token if one is there (0.0), else take nothing and say how long until one is."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
