"""Circuit breakers driven by trigger events (resilience4j's states, fed by our detectors).

CLOSED → OPEN when the failures of matching firing events reach `failure_threshold`: a
`count` event (dependency timeouts) weighs its observed count, any other matching kind
(error spike, slow-down) weighs the whole threshold, since its detector already judged.
OPEN → HALF_OPEN after `timeout` (→ CLOSED at once when nothing that opened it still fires).
HALF_OPEN → CLOSED once every episode that opened it has resolved, or after another
`timeout` with no failure known to be firing; → OPEN one tier further down the fallback
chain on a fresh failure (a new matching firing episode); → OPEN on the same tier when the
episodes that opened it are still firing after the half-open `timeout`. The chain is only
ever stepped down by a fresh failure. While CLOSED with a tier above 0, each quiet
`timeout` steps back one tier (a `fallback` decision each time).

Tiers: 0 is the primary, 1 the breaker's own `fallback`, then the entries of
`fallback_chain` after that fallback (a fallback not in the chain is the only tier).

After a restart: the episodes a breaker was waiting for are only *unconfirmed*: the
detectors that raised them may have started afresh and will never resolve them. They keep
the breaker open until its timeout, but never hold it half-open nor make it step down: with
no fresh failure it probes and closes one timeout later. A redelivered firing of one of them
confirms it again; a resolution of one is honoured.
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
    unconfirmed: list[str] = field(default_factory=list)  # episodes restored from an earlier run

    def view(self, config: BreakerConfig, chain: list[str]) -> dict[str, Any]:
        until = self.since + config.timeout if self.state == "open" else None
        return {"state": self.state, "tier": self.tier, "fallback": fallback_at(self.tier, config, chain),
                "open_until": until}

    def restored(self) -> None:
        """This state comes from an earlier run: its episodes may never be resolved now."""
        self.unconfirmed = list(dict.fromkeys([*self.unconfirmed, *self.episodes]))
        self.episodes = []


def tiers(config: BreakerConfig, chain: list[str]) -> list[str]:
    """The fallbacks in order: the breaker's own, then the chain's entries after it."""
    if not config.fallback:
        return list(chain)
    if config.fallback not in chain:
        return [config.fallback]
    return chain[chain.index(config.fallback):]


def fallback_at(tier: int, config: BreakerConfig, chain: list[str]) -> str | None:
    if tier <= 0:
        return None
    options = tiers(config, chain)
    return options[min(tier, len(options)) - 1] if options else None


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
            for known in (self.s.episodes, self.s.unconfirmed):
                if episode in known:
                    known.remove(episode)
            if self.s.state == "half_open" and not self.s.episodes and not self.s.unconfirmed:
                return self._close(now, "every episode that opened it has resolved")
            return []
        if episode in self.s.episodes:
            return []  # a redelivered or repeated firing of a known episode
        if episode in self.s.unconfirmed:
            self.s.unconfirmed.remove(episode)  # redelivered after a restart: still firing
            self.s.episodes.append(episode)
            return []
        self.s.episodes.append(episode)
        if self.s.state == "half_open":
            return self._open(now, f"{event.get('kind')} fired again while half-open", step_down=True)
        if self.s.state == "closed":
            self.s.failures += self._weight(event)
            if self.s.failures >= self.config.failure_threshold:
                return self._open(now, f"{self.s.failures:g} failures reached the threshold of "
                                       f"{self.config.failure_threshold}", step_down=True)
        return []

    def due(self, now: float) -> bool:
        """Whether `tick(now)` would make a transition."""
        if now - self.s.since < self.config.timeout:
            return False
        return self.s.state in ("open", "half_open") or (self.s.state == "closed" and self.s.tier > 0)

    def tick(self, now: float) -> list[Action]:
        if not self.due(now):
            return []
        if self.s.state == "open":
            self.s.state, self.s.since = "half_open", now
            if not self.s.episodes and not self.s.unconfirmed:
                return [("breaker_half_open", "open timeout passed"), *self._close(now, "no failure is firing")]
            return [("breaker_half_open", f"open for {self.config.timeout:g}s; trying the primary again")]
        if self.s.state == "half_open":
            if self.s.episodes:
                return self._open(now, "failures still firing after the half-open period", step_down=False)
            self.s.unconfirmed = []
            return self._close(now, f"no fresh failure in {self.config.timeout:g}s half-open (the failures that "
                                    "opened it were from before a restart and never resolved)")
        self.s.tier -= 1
        self.s.since = now
        return [("fallback", f"quiet for {self.config.timeout:g}s; stepping back to tier {self.s.tier}")]

    def reset(self, now: float, reason: str) -> list[Action]:
        """An operator's reset: closed, on the primary, every episode forgotten."""
        stepped_back = self.s.tier > 0
        self.s.tier, self.s.episodes, self.s.unconfirmed = 0, [], []
        out = self._close(now, reason)
        return [*out, ("fallback", f"{reason}; back to the primary")] if stepped_back else out

    def _weight(self, event: dict[str, Any]) -> float:
        if event.get("unit") == "count":
            return max(1.0, float(event.get("observed") or 0))
        return float(self.config.failure_threshold)

    def _open(self, now: float, reason: str, step_down: bool) -> list[Action]:
        before = fallback_at(self.s.tier, self.config, self.chain)
        self.s.state, self.s.since = "open", now
        if step_down:
            self.s.tier = min(self.s.tier + 1, max(1, len(tiers(self.config, self.chain))))
        fallback = fallback_at(self.s.tier, self.config, self.chain)
        if fallback == before:  # nothing to switch to: the agents keep the fallback they have
            return [("breaker_open", f"{reason}; {f'staying on {fallback}' if fallback else 'no fallback'}")]
        return [("breaker_open", reason), ("fallback", f"switching {self.name} to {fallback or 'none'}")]

    def _close(self, now: float, reason: str) -> list[Action]:
        self.s.state, self.s.since, self.s.failures = "closed", now, 0.0
        return [("breaker_close", reason)]
