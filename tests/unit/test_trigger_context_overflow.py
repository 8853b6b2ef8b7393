"""context_overflow: input tokens above 90 % of the model's context window."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from connectors.triggers.detectors.context_overflow import ContextOverflowConfig, ContextOverflowDetector
from connectors.triggers.episodes import EpisodeTracker
from testkit.trigger_helpers import CLIENT, T0, fired, observe_all, resource, span, traces


def chat(model: str, tokens: int, t: float = T0, provider: str | None = "openai", **attrs):
    values = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.usage.input_tokens": tokens,
              **attrs}
    if provider:
        values["gen_ai.provider.name"] = provider
    return span(f"chat {model}", start=t, kind=CLIENT, attrs=values)


def test_defaults_are_the_product_ones() -> None:
    assert ContextOverflowConfig().threshold == 0.9


def test_gpt_4o_near_its_128k_window_fires_with_the_ratio() -> None:
    detector = ContextOverflowDetector(ContextOverflowConfig())
    observe_all(detector, [traces(resource("writer", [
        chat("gpt-4o", 3_000), chat("gpt-4o", 125_000, **{"gen_ai.agent.name": "summariser"})]))])
    (doc,) = fired(detector, T0 + 1)
    assert (doc["kind"], doc["unit"], doc["threshold"]) == ("context_overflow", "ratio", 0.9)
    assert doc["subject"] == {"service": "writer", "model": "gpt-4o", "agent": "summariser"}
    assert doc["observed"] == pytest.approx(125_000 / 128_000, abs=1e-4)
    assert "128000" in doc["message"]


def test_response_model_wins_and_config_windows_override() -> None:
    config = ContextOverflowConfig(context_windows={"My-Local-LLM": 8192})
    detector = ContextOverflowDetector(config)
    observe_all(detector, [traces(resource("local", [
        chat("llama", 8_000, provider="ollama", **{"gen_ai.response.model": "my-local-llm"})]))])
    (obs,) = detector.evaluate(T0 + 1)
    assert obs.subject == {"service": "local", "model": "my-local-llm"}
    assert obs.observed == pytest.approx(8000 / 8192, abs=1e-4)


def test_prices_file_adds_a_window(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  - model: house-model\n    context_window: 32000\n")
    detector = ContextOverflowDetector(ContextOverflowConfig(prices_file=str(prices)))
    observe_all(detector, [traces(resource("svc", [chat("house-model", 31_000, provider="vllm")]))])
    (obs,) = detector.evaluate(T0 + 1)
    assert obs.observed == pytest.approx(31_000 / 32_000, abs=1e-4)


def test_without_the_prices_module_only_configured_windows_apply() -> None:
    detector = ContextOverflowDetector(ContextOverflowConfig(context_windows={"tiny": 1000}))
    detector._lookup = None  # what a failed import of pipeline.catalogue leaves
    observe_all(detector, [traces(resource("svc", [chat("gpt-4o", 127_000), chat("tiny", 990)]))])
    assert [o.subject["model"] for o in detector.evaluate(T0 + 1)] == ["tiny"]


def test_busy_healthy_llm_traffic_and_unknown_models_do_not_fire() -> None:
    detector = ContextOverflowDetector(ContextOverflowConfig())
    rng = random.Random(11)
    spans = [chat("gpt-4o-mini", rng.randrange(100, int(0.85 * 128_000)), T0 + i * 0.01) for i in range(500)]
    spans += [chat("claude-3-5-haiku-latest", 179_000, provider="anthropic")]  # 0.895 of 200k
    spans += [chat("some-private-model", 10_000_000, provider="acme")]  # window unknown: not judged
    spans += [span("GET /", attrs={"gen_ai.usage.input_tokens": "many"})]  # not a number
    observe_all(detector, [traces(resource("busy", spans))])
    assert detector.evaluate(T0 + 6) == []


def test_the_episode_resolves_when_no_overflow_comes_for_resolve_after() -> None:
    detector = ContextOverflowDetector(ContextOverflowConfig())
    tracker = EpisodeTracker("triggers", resolve_after=30, resolve_ratio=0.8)
    observe_all(detector, [traces(resource("w", [chat("gpt-4o", 127_000)]))])
    assert [d["status"] for d in fired(detector, T0 + 1, tracker)] == ["firing"]
    observe_all(detector, [traces(resource("w", [chat("gpt-4o", 126_000)]))])
    assert fired(detector, T0 + 20, tracker) == []  # still overflowing: the same episode
    observe_all(detector, [traces(resource("w", [chat("gpt-4o", 1_000)]))])
    assert fired(detector, T0 + 21, tracker) == []  # the first evaluation without an overflow
    assert fired(detector, T0 + 50, tracker) == []
    assert [d["status"] for d in fired(detector, T0 + 51, tracker)] == ["resolved"]


def test_override_per_model() -> None:
    config = ContextOverflowConfig(overrides=[{"match": {"model": "gpt-4o"}, "threshold": 0.5}])
    detector = ContextOverflowDetector(config)
    observe_all(detector, [traces(resource("w", [chat("gpt-4o", 70_000), chat("gpt-4o-mini", 70_000)]))])
    (obs,) = detector.evaluate(T0 + 1)
    assert obs.subject["model"] == "gpt-4o" and obs.threshold == 0.5
