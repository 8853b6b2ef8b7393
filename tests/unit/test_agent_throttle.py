"""The agent library's token bucket and throttle on a manual clock (waits are recorded, not slept)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sutazai_agent import DecisionFeed, Throttle, Throttled
from sutazai_agent.bucket import TokenBucket
from sutazai_agent.clock import ManualClock

TARGET = "service=planner"


def throttle_decision(action: str, rate: int | None, burst: int | None, prefer: str | None = None) -> dict[str, Any]:
    return {"schema": "agentdbg.decision/v1", "id": action, "action": action, "target": TARGET,
            "state": {"rate_per_minute": rate, "burst_per_second": burst, "fallback": prefer}, "reason": action}


def test_bucket_gives_the_burst_then_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate_per_minute=120, burst_per_second=3, clock=clock)  # 2 per second
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [bucket.reserve() for _ in range(2)] == [0.5, 1.0]  # waiters queue in turn
    clock.advance(1.0)
    assert bucket.try_take() == pytest.approx(0.5)  # the two waiters took what refilled
    clock.advance(10)  # refills to the burst size, no more
    assert bucket.try_take() == 0.0 and bucket.tokens == 2.0


def test_new_limits_keep_the_saved_tokens_up_to_the_new_burst() -> None:
    clock = ManualClock()
    bucket = TokenBucket(600, 10, clock=clock)
    bucket.configure(60, 2)
    assert bucket.tokens == 2
    with pytest.raises(ValueError):
        bucket.configure(0, 1)


def test_throttle_follows_the_daemon_throttle_and_its_prefer_model_then_lifts() -> None:
    clock = ManualClock()
    feed = DecisionFeed("http://127.0.0.1:1")
    models: list[str] = []

    @Throttle(TARGET, feed=feed, clock=clock)
    def ask(prompt: str, model: str = "gpt-4o") -> str:
        models.append(model)
        return model

    for _ in range(5):
        ask("unthrottled")
    assert clock.slept == [] and set(models) == {"gpt-4o"}
    feed.apply_decision(throttle_decision("throttle", 60, 2, prefer="gpt-4o-mini"))
    for _ in range(5):
        ask("throttled")
    assert clock.slept == [1.0, 1.0, 1.0]  # two at once (the burst), then one a second
    assert models[5:] == ["gpt-4o-mini"] * 5
    feed.apply_decision(throttle_decision("unthrottle", None, None))
    ask("lifted")
    assert len(clock.slept) == 3 and models[-1] == "gpt-4o"


def test_raise_mode_and_max_wait_refuse_without_taking_a_turn() -> None:
    clock = ManualClock()
    feed = DecisionFeed("http://127.0.0.1:1")
    feed.apply_decision(throttle_decision("throttle", 60, 1))
    refusing = Throttle(TARGET, feed=feed, clock=clock, mode="raise")
    refusing.admit()
    with pytest.raises(Throttled) as raised:
        refusing.admit()
    assert raised.value.retry_after == pytest.approx(1.0)
    waiting = Throttle(TARGET, feed=feed, clock=clock, max_wait=0.5)
    waiting.admit()
    with pytest.raises(Throttled):
        waiting.admit()
    clock.advance(1.0)
    assert waiting.admit() == (0.0, None)  # the refused call gave its turn back


def test_local_limits_apply_and_the_stricter_wins() -> None:
    clock = ManualClock()
    feed = DecisionFeed("http://127.0.0.1:1")
    limiter = Throttle(TARGET, rate_per_minute=30, burst_per_second=1, feed=feed, clock=clock)
    assert limiter.limits() == ((30, 1), None, "local")
    feed.apply_decision(throttle_decision("throttle", 1000, 100))
    assert limiter.limits() == ((30, 1), None, "daemon")


def test_async_throttle_waits_on_the_clock() -> None:
    clock = ManualClock()
    feed = DecisionFeed("http://127.0.0.1:1")
    feed.apply_decision(throttle_decision("throttle", 120, 1))

    @Throttle(TARGET, feed=feed, clock=clock)
    async def ask() -> str:
        return "ok"

    async def run() -> list[str]:
        return [await ask() for _ in range(3)]

    assert asyncio.run(run()) == ["ok"] * 3
    assert clock.slept == [0.5, 0.5]
