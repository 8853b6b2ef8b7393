"""The safety engine: every target's state, and the decisions trigger events and time call for.

It is plain data plus pure transitions, so the processor can run it on a copy and keep the
result only once the decisions have been taken by every exporter (at-least-once without
repeating an action). Decision ids are deterministic from (cause event id, action, target),
and ids already decided are remembered, so a redelivered event decides nothing new. An
operator's actions (`reset_breaker`, `lift_throttle`) are decisions too, with who asked.
"""
from __future__ import annotations

import copy
from collections import ChainMap, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from pipeline.documents.decision import decision_id
from processors.safety.breakers import Breaker, BreakerState, matches
from processors.safety.canary import CanaryState, analyse
from processors.safety.config import SafetyConfig
from processors.safety.decision import admin_cause, cause_of, decision

SEEN_LIMIT = 100_000
_NO_THROTTLE = {"rate_per_minute": None, "burst_per_second": None, "fallback": None}


@dataclass
class SafetyState:
    breakers: dict[str, BreakerState] = field(default_factory=dict)
    throttles: dict[str, dict[str, Any]] = field(default_factory=dict)
    canaries: dict[str, CanaryState] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: "OrderedDict[str, None] | ChainMap[str, None]" = field(default_factory=OrderedDict)

    def to_json(self) -> dict[str, Any]:
        return {"breakers": {k: asdict(v) for k, v in self.breakers.items()}, "throttles": self.throttles,
                "canaries": {k: asdict(v) for k, v in self.canaries.items()}, "alerts": self.alerts,
                "seen": list(self.seen)}

    @classmethod
    def from_json(cls, data: dict[str, Any], restored: bool = False) -> "SafetyState":
        """`restored`: the state is from an earlier run of the daemon, whose detectors' episodes
        are gone (see processors/safety/breakers.py for what that does to open breakers)."""
        state = cls(breakers={k: BreakerState(**v) for k, v in data.get("breakers", {}).items()},
                    throttles=data.get("throttles", {}),
                    canaries={k: CanaryState(**v) for k, v in data.get("canaries", {}).items()},
                    alerts=data.get("alerts", {}),
                    seen=OrderedDict.fromkeys(data.get("seen", [])))
        if restored:
            for breaker in state.breakers.values():
                breaker.restored()
        return state


class SafetyEngine:
    def __init__(self, config: SafetyConfig, state: SafetyState | None = None) -> None:
        self.config = config
        self.state = state or SafetyState()
        for name in config.breakers:
            self.state.breakers.setdefault(name, BreakerState())
        for name in set(self.state.breakers) - set(config.breakers):
            del self.state.breakers[name]  # removed from the config: nothing decides on it any more

    def copy(self) -> "SafetyEngine":
        """A candidate to run decisions on. The (large) set of decided ids is not copied: the
        candidate writes new ids to a layer of its own, folded in by `commit`."""
        seen = self.state.seen.maps[-1] if isinstance(self.state.seen, ChainMap) else self.state.seen
        state = SafetyState(copy.deepcopy(self.state.breakers), copy.deepcopy(self.state.throttles),
                            copy.deepcopy(self.state.canaries), copy.deepcopy(self.state.alerts),
                            ChainMap({}, seen))
        return SafetyEngine(self.config, state)

    def commit(self) -> None:
        """Fold the ids this candidate decided into the shared set, oldest trimmed first."""
        if isinstance(self.state.seen, ChainMap):
            added, base = self.state.seen.maps[0], self.state.seen.maps[-1]
            assert isinstance(base, OrderedDict)  # `copy` chains a candidate's ids over the shared dict
            base.update(added)
            self.state.seen = base
        while len(self.state.seen) > SEEN_LIMIT:
            self.state.seen.popitem(last=False)

    def tick_due(self, now: float) -> bool:
        """Whether `tick` would change anything now (cheap: no copy needed when it would not)."""
        return any(breaker.due(now) for _, breaker in self._breaker_objects())

    # -- inputs ------------------------------------------------------------------------------------
    def handle(self, event: dict[str, Any], now: float) -> list[dict[str, Any]]:
        if event.get("kind") == "health_snapshot":
            return self._keep_new(self._canary(event, now))
        out = self._breakers(event, now)
        out += self._cost(event, now)
        out += self._alert(event, now)
        return self._keep_new(out)

    def tick(self, now: float) -> list[dict[str, Any]]:
        out = []
        for name, breaker in self._breaker_objects():
            cause = breaker.s.cause
            for action, reason in breaker.tick(now):
                out.append(self._breaker_decision(name, action, reason, cause, now, key=f"{breaker.s.since}"))
        return self._keep_new(out)

    # -- per concern -----------------------------------------------------------------------------
    def _breaker_objects(self) -> Iterator[tuple[str, Breaker]]:
        chain = self.config.fallback_chain
        for name, config in self.config.breakers.items():
            yield name, Breaker(name, config, chain, self.state.breakers[name])

    def _breakers(self, event: dict[str, Any], now: float) -> list[dict[str, Any]]:
        out = []
        for name, breaker in self._breaker_objects():
            if not matches(breaker.config.match, event):
                continue
            actions = breaker.on_event(event, now)
            if actions:
                breaker.s.cause = cause_of(event)
            out += [self._breaker_decision(name, a, r, cause_of(event), now) for a, r in actions]
        return out

    def _breaker_decision(self, name: str, action: str, reason: str, cause: dict[str, Any], now: float,
                          key: str = "", requested_by: str | None = None) -> dict[str, Any]:
        view = self.state.breakers[name].view(self.config.breakers[name], self.config.fallback_chain)
        return decision(action, name, view, cause, f"breaker {name}: {reason}", now, key_extra=key,
                        requested_by=requested_by)

    def _cost(self, event: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """A target is throttled from the first firing of any of its cost episodes (daily and
        monthly budgets, burn rate) until every one of them has resolved: one resolving (the
        burn rate calming down) while a budget is still spent lifts nothing."""
        cost = self.config.cost
        if not cost.enabled or event.get("kind") != "cost_budget":
            return []
        target = event.get("subject_key", "")
        episode = event.get("episode", "")
        cause = cause_of(event)
        throttle = self.state.throttles.get(target)
        episodes = _throttle_episodes(throttle) if throttle is not None else []
        if event.get("status") == "firing":
            if event.get("severity") not in cost.throttle_severities:
                return []  # an early warning (80 %, burn rate) alerts; it does not throttle
            if throttle is not None:
                if episode not in episodes:
                    episodes.append(episode)
                return []
            state = {"rate_per_minute": cost.rate_per_minute, "burst_per_second": cost.burst_per_second,
                     "fallback": cost.prefer or None}
            self.state.throttles[target] = {**state, "since": now, "episodes": [episode]}
            out = [decision("throttle", target, state, cause, f"{target}: {event.get('message', 'budget crossed')}",
                            now)]
            if cost.prefer:
                out.append(decision("fallback", target, state, cause, f"{target}: prefer {cost.prefer} while "
                                    "over budget", now))
            return out
        if throttle is None:
            return []
        if episode in episodes:
            episodes.remove(episode)
        if episodes:
            return []
        del self.state.throttles[target]
        return [decision("unthrottle", target, _NO_THROTTLE, cause, f"{target}: budget period rolled over", now)]

    def _alert(self, event: dict[str, Any], now: float) -> list[dict[str, Any]]:
        alerts = self.config.alerts
        if not alerts.enabled or event.get("status") not in ("firing", "resolved"):
            return []
        name = alerts.names.get(event.get("kind", ""), event.get("kind", "trigger"))
        severity = "critical" if name in alerts.critical else "warning"
        labels = {"alertname": name, "severity": severity, "kind": event.get("kind", ""),
                  **{k: str(v) for k, v in (event.get("subject") or {}).items()}}
        key = event.get("episode", "")
        state = {"labels": labels, "annotations": {"summary": event.get("message", ""),
                                                   "observed": str(event.get("observed")),
                                                   "threshold": str(event.get("threshold"))},
                 "starts_at": event.get("first_seen"), "episode": key}
        if event["status"] == "firing":
            self.state.alerts[key] = state
            return [decision("alert", labels, state, cause_of(event), event.get("message", name), now)]
        self.state.alerts.pop(key, None)
        return [decision("resolve_alert", labels, state, cause_of(event), f"resolved: {name}", now)]

    def _canary(self, event: dict[str, Any], now: float) -> list[dict[str, Any]]:
        subject = event.get("subject") or {}
        if not self.config.canary.enabled or not subject.get("canary"):
            return []
        service, version = str(subject.get("service", "")), str(subject.get("service_version", ""))
        key = f"{service}@{version}"
        state = self.state.canaries.setdefault(key, CanaryState(service, version))
        verdict = analyse(state, self.config.canary, event.get("metrics") or {}, now)
        if verdict is None:
            return []
        action, reason = verdict
        # The canary is decided once; its key makes a redelivered later snapshot decide nothing.
        doc = decision(action, {"service": service, "version": version}, {"phase": state.phase},
                       cause_of(event), f"canary {key}: {reason}", now, key_extra=key)
        doc["id"] = decision_id(key, action, doc["target"])
        return [doc]

    # -- an operator's actions (the debug API) ---------------------------------------------------
    def reset_breaker(self, name: str, requested_by: str, reason: str, request_id: str,
                      now: float) -> list[dict[str, Any]]:
        """Close breaker `name` and put it back on the primary; KeyError if there is none."""
        breaker = dict(self._breaker_objects())[name]
        why = f"reset by {requested_by}" + (f": {reason}" if reason else "")
        cause = admin_cause(request_id, name)
        breaker.s.cause = cause
        return self._keep_new([self._breaker_decision(name, action, text, cause, now, requested_by=requested_by)
                               for action, text in breaker.reset(now, why)])

    def lift_throttle(self, target: str, requested_by: str, reason: str, request_id: str,
                      now: float) -> list[dict[str, Any]]:
        """End the cost throttle of `target` (a subject key); KeyError if it is not throttled."""
        del self.state.throttles[target]
        why = f"{target}: throttle lifted by {requested_by}" + (f": {reason}" if reason else "")
        return self._keep_new([decision("unthrottle", target, _NO_THROTTLE, admin_cause(request_id, target), why,
                                        now, requested_by=requested_by)])

    def _keep_new(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for doc in decisions:
            if doc["id"] in self.state.seen:
                continue
            self.state.seen[doc["id"]] = None
            fresh.append(doc)
        if not isinstance(self.state.seen, ChainMap):
            self.commit()
        return fresh


def _throttle_episodes(throttle: dict[str, Any]) -> list[str]:
    """The cost episodes a throttle waits for (a state file from before `episodes` has `episode`)."""
    if "episodes" not in throttle:
        throttle["episodes"] = [e for e in [throttle.pop("episode", None)] if e]
    return throttle["episodes"]
