"""Config of the `safety` processor, with the product's breaker, canary and cost settings as
defaults: breakers `ollama_model` (5 failures, 30 s, fallback tinyllama), `database` (3, 10 s,
cache_only) and `external_api` (10, 60 s, offline_mode); a canary promoted after 10 min under
2 % errors and 500 ms p95, rolled back over 10 %, 2 s or 1 GB; throttling at 1000/minute
with bursts of 100/second once a budget is spent."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from pipeline.component import StrictConfig
from pipeline.config.units import ByteSize, Duration

Severity = Literal["critical", "warning", "info"]


class Match(StrictConfig):
    """An event matches when its kind is listed (or `kinds` is empty) and every subject key given
    here equals the event's subject value (case-insensitive; `*` matches any present value)."""

    kinds: list[str] = Field(default_factory=list)
    subject: dict[str, str] = Field(default_factory=dict)


class BreakerConfig(StrictConfig):
    failure_threshold: PositiveInt = 5
    timeout: Duration = 30.0
    fallback: str = ""
    match: list[Match] = Field(default_factory=list, validate_default=True)

    @field_validator("match")
    @classmethod
    def _some_match(cls, value: list[Match]) -> list[Match]:
        if not value:
            raise ValueError("a breaker needs at least one match rule (kinds and/or subject), or it never opens")
        return value


def _default_breakers() -> dict[str, BreakerConfig]:
    timeouts = ["dependency_failure", "error_rate_spike"]
    return {
        "ollama_model": BreakerConfig(failure_threshold=5, timeout=30, fallback="tinyllama",
                                      match=[Match(kinds=timeouts, subject={"provider": "ollama"}),
                                             Match(kinds=timeouts, subject={"dependency": "ollama"})]),
        "database": BreakerConfig(failure_threshold=3, timeout=10, fallback="cache_only",
                                  match=[Match(kinds=timeouts, subject={"dependency": "postgres"}),
                                         Match(kinds=timeouts, subject={"dependency": "database"})]),
        "external_api": BreakerConfig(failure_threshold=10, timeout=60, fallback="offline_mode",
                                      match=[Match(kinds=["dependency_failure"])]),
    }


class SuccessCriteria(StrictConfig):
    max_error_rate: float = 0.02
    max_latency: Duration = 0.5
    hold_for: Duration = 600.0


class RollbackCriteria(StrictConfig):
    error_rate: float = 0.10
    latency: Duration = 2.0
    memory: ByteSize = 1_000_000_000


class CanaryConfig(StrictConfig):
    enabled: bool = True
    traffic_split: float = 0.05
    success: SuccessCriteria = SuccessCriteria()
    rollback: RollbackCriteria = RollbackCriteria()


def _critical_only() -> list[Severity]:
    return ["critical"]


class CostConfig(StrictConfig):
    enabled: bool = True
    rate_per_minute: PositiveInt = 1000
    burst_per_second: PositiveInt = 100
    prefer: str = ""   # cheap fallback model to switch to while throttled
    # Which cost events throttle: by default only a spent budget (critical); 80 % and the
    # burn-rate projection are warnings that alert without throttling.
    throttle_severities: list[Severity] = Field(default_factory=_critical_only)


class AlertConfig(StrictConfig):
    enabled: bool = True
    # trigger kind → (alert name, severity), after the product's alert classes
    names: dict[str, str] = Field(default_factory=lambda: {
        "error_rate_spike": "error_rate_high", "memory_leak": "memory_leak", "deadlock": "agent_down",
        "dependency_failure": "dependency_failure", "performance_degradation": "slow_response",
        "cost_budget": "high_cost", "infinite_loop": "pattern_anomaly", "context_overflow": "pattern_anomaly"})
    critical: list[str] = Field(default_factory=lambda: ["agent_down", "error_rate_high", "memory_leak",
                                                         "dependency_failure"])


class SafetyConfig(StrictConfig):
    # Given breakers merge over the defaults key by key (`database: {timeout: 5s}` keeps the
    # default's match rules); `name: null` removes a default breaker.
    breakers: dict[str, BreakerConfig] = Field(default_factory=_default_breakers)
    fallback_chain: list[str] = Field(default_factory=lambda: ["tinyllama", "cache_only", "offline_mode"])
    canary: CanaryConfig = CanaryConfig()
    cost: CostConfig = CostConfig()
    alerts: AlertConfig = AlertConfig()
    state_file: str | None = None
    tick_interval: Duration = 0.5
    decisions_kept: PositiveInt = 1000
    mode: Literal["enforce", "dry_run"] = "enforce"
    # What the failures an open breaker waits for mean after a restart (a state file written by
    # an earlier run). `probe`: nothing: the detectors that raised them may have started afresh
    # and will never resolve them, so the breaker half-opens after its timeout and closes one
    # timeout later unless a fresh failure arrives. `keep`: still firing until resolved: right
    # when only this consumer restarted and the collector's detectors still hold their episodes;
    # the breaker then stays on its fallback (never stepping down) until they resolve or an
    # operator resets it.
    restored_episodes: Literal["probe", "keep"] = "probe"

    @model_validator(mode="before")
    @classmethod
    def _merge_breakers(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("breakers"), dict):
            return data
        merged: dict[str, Any] = {name: b.model_dump() for name, b in _default_breakers().items()}
        for name, body in data["breakers"].items():
            if body is None:
                merged.pop(name, None)
            elif isinstance(body, dict) and name in merged:
                merged[name] = {**merged[name], **body}
            else:
                merged[name] = body
        return {**data, "breakers": merged}
