"""Circuit breakers driven by trigger events (resilience4j's states, fed by our detectors).

CLOSED → OPEN when the failures of matching firing events reach `failure_threshold`: a
`count` event (dependency timeouts) weighs its observed count, any other matching kind
(error spike, slow-down) weighs the whole threshold, since its detector already judged.
OPEN → HALF_OPEN after `timeout`. HALF_OPEN → CLOSED once every episode that opened it has
resolved; → OPEN again, one tier further down the fallback chain, on a new matching firing
event or when its episodes are still firing after another `timeout`. While CLOSED with a
tier above 0, each quiet `timeout` steps back one tier (a `fallback` decision each time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.safety.config import BreakerConfig, Match

Action = tuple[str, str]  # (action, reason)


@dataclass
class BreakerState:
    state: str = "closed"
    tier: int = 0
    failures: float = 0.0
    since: float = 0.0
    episodes: list[str] = field(default_factory=list)
    cause: dict[str, Any] = field(default_factory=dict)

    def view(self, config: BreakerConfig, chain: list[str]) -> dict[str, Any]:
        until = self.since + config.timeout if self.state == "open" else None
        return {"state": self.state, "tier": self.tier, "fallback": fallback_at(self.tier, config, chain),
                "open_until": until}


def fallback_at(tier: int, config: BreakerConfig, chain: list[str]) -> str | None:
    """Tier 0 is the primary; tier 1 the breaker's own fallback; then down the chain."""
    if tier <= 0:
        return None
    tiers = list(dict.fromkeys([config.fallback, *chain] if config.fallback else chain))
    return tiers[min(tier, len(tiers)) - 1] if tiers else None


def matches(matchers: list[Match], event: dict[str, Any]) -> bool:
    subject = {k: str(v).lower() for k, v in (event.get("subject") or {}).items()}
    for matcher in matchers:
        if matcher.kinds and event.get("kind") not in matcher.kinds:
            continue
        if all(key in subject and (want == "*" or subject[key] == want.lower())
               for key, want in matcher.subject.items()):
            return True
    return False


class Breaker:
    def __init__(self, name: str, config: BreakerConfig, chain: list[str], state: BreakerState) -> None:
        self.name, self.config, self.chain, self.s = name, config, chain, state

    def on_event(self, event: dict[str, Any], now: float) -> list[Action]:
        episode = event.get("episode", "")
        if event.get("status") == "resolved":
            if episode in self.s.episodes:
                self.s.episodes.remove(episode)
            if self.s.state == "half_open" and not self.s.episodes:
                return self._close(now, "every episode that opened it has resolved")
            return []
        if episode in self.s.episodes:
            return []  # a redelivered or repeated firing of a known episode
        self.s.episodes.append(episode)
        if self.s.state == "half_open":
            return self._open(now, f"{event.get('kind')} fired again while half-open")
        if self.s.state == "closed":
            self.s.failures += self._weight(event)
            if self.s.failures >= self.config.failure_threshold:
                return self._open(now, f"{self.s.failures:g} failures reached the threshold of "
                                       f"{self.config.failure_threshold}")
        return []

    def due(self, now: float) -> bool:
        """Whether `tick(now)` would make a transition."""
        if now - self.s.since < self.config.timeout:
            return False
        return (self.s.state == "open" or (self.s.state == "half_open" and bool(self.s.episodes))
                or (self.s.state == "closed" and self.s.tier > 0))

    def tick(self, now: float) -> list[Action]:
        elapsed = now - self.s.since
        if self.s.state == "open" and elapsed >= self.config.timeout:
            self.s.state, self.s.since = "half_open", now
            if not self.s.episodes:
                return [("breaker_half_open", "open timeout passed"), *self._close(now, "no failure is firing")]
            return [("breaker_half_open", f"open for {self.config.timeout:g}s; trying the primary again")]
        if self.s.state == "half_open" and self.s.episodes and elapsed >= self.config.timeout:
            return self._open(now, "failures still firing after the half-open period")
        if self.s.state == "closed" and self.s.tier > 0 and elapsed >= self.config.timeout:
            self.s.tier -= 1
            self.s.since = now
            return [("fallback", f"quiet for {self.config.timeout:g}s; stepping back to tier {self.s.tier}")]
        return []

    def _weight(self, event: dict[str, Any]) -> float:
        if event.get("unit") == "count":
            return max(1.0, float(event.get("observed") or 0))
        return float(self.config.failure_threshold)

    def _open(self, now: float, reason: str) -> list[Action]:
        self.s.state, self.s.since = "open", now
        self.s.tier = min(self.s.tier + 1, len(self.chain) + 1)
        fallback = fallback_at(self.s.tier, self.config, self.chain)
        return [("breaker_open", reason), ("fallback", f"switching {self.name} to {fallback or 'none'}")]

    def _close(self, now: float, reason: str) -> list[Action]:
        self.s.state, self.s.since, self.s.failures = "closed", now, 0.0
        return [("breaker_close", reason)]
