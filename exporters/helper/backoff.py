"""Exponential backoff with jitter that yields to the server's own retry hint.

Written here rather than taken from tenacity: the helper's loop must also stop at the
shutdown deadline and count every outcome, and the schedule itself is a few lines.
"""
from __future__ import annotations

import random

from exporters.helper.settings import RetrySettings


class Backoff:
    def __init__(self, settings: RetrySettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.current = settings.initial_interval
        self.rng = rng or random.Random()

    def next_delay(self, server_hint: float | None = None) -> float:
        """The wait before the next attempt; a server hint (Retry-After, RetryInfo) wins if longer."""
        factor = self.settings.randomization_factor
        delay = self.current * (1 + factor * (2 * self.rng.random() - 1))
        self.current = min(self.current * self.settings.multiplier, self.settings.max_interval)
        if server_hint is not None:
            delay = max(delay, server_hint)
        return delay
