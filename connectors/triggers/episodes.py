"""Episodes: one firing event per episode and one resolved event when it clears (hysteresis).

A subject fires when its observed value crosses the threshold. It resolves only once the
value has stayed below `clear_below` (by default `resolve_ratio` × threshold) for
`resolve_after` seconds, or the subject has had no data for that long, so a value hovering
around the threshold does not flap.

The open episodes can be written out per episode key and read back (`snapshot`, `restore`:
a checkpoint), so an episode open before a restart keeps its id and resolves after it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from connectors.triggers.checkpoint_state import dump_examples, load_examples
from connectors.triggers.event import Observation, document, stable_id


@dataclass
class Episode:
    id: str
    first_seen: float
    last_seen: float
    last: Observation
    clear_since: float | None = None

    def dump(self) -> dict[str, Any]:
        """The episode as JSON values (its observation without the health metrics)."""
        last = {k: v for k, v in asdict(self.last).items() if k not in ("examples", "metrics")}
        last["examples"] = dump_examples(self.last.examples)
        return {"id": self.id, "first_seen": self.first_seen, "last_seen": self.last_seen,
                "clear_since": self.clear_since, "last": last}

    @classmethod
    def load(cls, value: dict[str, Any]) -> Episode:
        last = dict(value["last"])
        last["window"] = tuple(last["window"])
        last["examples"] = load_examples(last["examples"])
        return cls(value["id"], value["first_seen"], value["last_seen"], Observation(**last), value["clear_since"])


class EpisodeTracker:
    def __init__(self, detector: str, resolve_after: float, resolve_ratio: float) -> None:
        self.detector = detector
        self.resolve_after = resolve_after
        self.resolve_ratio = resolve_ratio
        self.active: dict[str, Episode] = {}

    def update(self, kind: str, observations: Iterable[Observation], now: float) -> list[dict[str, Any]]:
        """Feed one evaluation of one detector; return the documents to emit."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for obs in observations:
            key = obs.key  # computed once: a subject's key is a string join
            seen.add(key)
            episode = self.active.get(key)
            if episode is None:
                if self._fires(obs):
                    out.append(self._open(obs, now))
            else:
                self._continue(episode, obs, now, out)
        for key, episode in list(self.active.items()):
            if episode.last.kind == kind and key not in seen:
                self._quiet(key, episode, now, out)
        return out

    @staticmethod
    def _fires(obs: Observation) -> bool:
        return obs.firing if obs.firing is not None else obs.observed > obs.threshold

    def _clears(self, obs: Observation) -> bool:
        # An explicit clear level wins, so a detector can fire on one test (a confidence bound)
        # and clear on the observed value, keeping the hysteresis gap.
        if obs.clear_below is not None:
            return obs.observed <= obs.clear_below
        if obs.firing is not None:
            return not obs.firing
        return obs.observed <= obs.threshold * self.resolve_ratio

    def _open(self, obs: Observation, now: float) -> dict[str, Any]:
        episode = Episode(stable_id(obs.key, now), now, now, obs)
        self.active[obs.key] = episode
        return document(obs, "firing", episode.id, now, now, now, self.detector)

    def _continue(self, episode: Episode, obs: Observation, now: float, out: list[dict[str, Any]]) -> None:
        if self._clears(obs):
            episode.clear_since = episode.clear_since or now
            resolve_after = self.resolve_after if obs.resolve_after is None else obs.resolve_after
            if now - episode.clear_since >= resolve_after:
                out.append(self._close(obs.key, episode, obs, now))
            return
        episode.clear_since = None
        episode.last_seen = now
        if self._fires(obs):
            episode.last = obs

    def _quiet(self, key: str, episode: Episode, now: float, out: list[dict[str, Any]]) -> None:
        """No data for the subject at all: it resolves after resolve_after of silence."""
        episode.clear_since = episode.clear_since or now
        if now - episode.clear_since >= self.resolve_after:
            out.append(self._close(key, episode, episode.last, now))

    def _close(self, key: str, episode: Episode, obs: Observation, now: float) -> dict[str, Any]:
        del self.active[key]
        return document(obs, "resolved", episode.id, episode.first_seen, episode.last_seen, now, self.detector)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every open episode as JSON values, by episode key."""
        return {key: episode.dump() for key, episode in self.active.items()}

    def restore(self, entries: dict[str, dict[str, Any]]) -> None:
        """Merge episodes written by `snapshot` (an episode already open here is kept)."""
        for key, value in entries.items():
            self.active.setdefault(key, Episode.load(value))

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.active.pop(key, None)
