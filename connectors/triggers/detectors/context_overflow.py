"""context_overflow: a call's input tokens above `threshold` (0.9) of the model's context window.

What fires: any span whose `gen_ai.usage.input_tokens` is more than `threshold` × the
context window of its model (`gen_ai.response.model`, else `gen_ai.request.model`). The
window comes from `context_windows:` in this config (model name, case-insensitive →
tokens) first, then from the model catalogue's price book (`pipeline/catalogue/prices.py`,
genai-prices data plus the optional `prices_file` override file), looked up once per
(provider, model) and cached. Without that module, or for a model nobody knows, spans of
that model are not judged.

Subject: `service`, `model` (+ `agent` when the span has `gen_ai.agent.name`). `observed`
is the largest input/window ratio among the subject's overflowing spans since the last
evaluation, unit `ratio`. One episode per subject: a subject is reported only while it
has overflowing spans, so its episode resolves once none has come for `resolve_after`.
Per-subject `overrides` set the ratio.

Bounded state: what is held between evaluations is at most `max_subjects` (5,000) subjects (a
new one past that waits for the next evaluation: `agentdbg_trigger_state_evictions_total
{reason="subject_untracked"}`), and the window cache holds at most 4,096 (provider, model)
pairs (emptied when full).
"""
from __future__ import annotations

import logging
import math
from itertools import compress
from operator import gt
from typing import Any, Callable, cast

from pydantic import Field, PositiveInt

from connectors.triggers.columnar import where, where_equal
from connectors.triggers.detectors.base import BoundedConfig, Detector
from connectors.triggers.event import Examples, Observation
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

log = logging.getLogger("agentdbg.connector.triggers")
MAX_CACHED = 4096
WindowLookup = Callable[[str | None, str | None], int | None]
TOKENS, PROVIDER = "gen_ai.usage.input_tokens", "gen_ai.provider.name"
NUMBER_TYPES = frozenset({int, float})  # token counts judged: not bool, not text


class ContextOverflowConfig(BoundedConfig):
    threshold: float = Field(0.9, gt=0)
    context_windows: dict[str, PositiveInt] = Field(default_factory=dict)
    prices_file: str | None = None


def price_book_lookup(prices_file: str | None) -> WindowLookup | None:
    """`context_window(provider, model)` from the genai processor's prices module, or None
    when it cannot be imported (the detector then knows only `context_windows`)."""
    try:
        from pipeline.catalogue import context_window
    except Exception:  # the module is optional: any import failure degrades to the config table
        log.warning("context windows: pipeline.catalogue is unavailable; only context_windows apply")
        return None
    return lambda provider, model: context_window(provider, model, prices_file)


def load_price_data(prices_file: str | None) -> None:
    """Load the genai price book and genai-prices' bundled data (about 0.2 s of CPU, once per
    process); a failure is logged and left to the first lookup."""
    try:
        from genai_prices import data_snapshot

        from pipeline.catalogue import price_book

        price_book(prices_file)
        data_snapshot.get_snapshot()
    except Exception:
        log.warning("context windows: the price data could not be loaded ahead of the first batch", exc_info=True)


class ContextOverflowDetector(Detector[ContextOverflowConfig]):
    kind = "context_overflow"
    attribute_keys = ("gen_ai.usage.input_tokens", "gen_ai.response.model", "gen_ai.request.model",
                      "gen_ai.provider.name", "gen_ai.agent.name")
    config_derived = ("overrides_by_model", "windows", "limits", "floor", "_lookup")

    def __init__(self, config: ContextOverflowConfig) -> None:
        super().__init__(config)
        self.overrides_by_model = {model.lower(): tokens for model, tokens in config.context_windows.items()}
        self.windows: dict[tuple[Any, Any], int | None] = {}
        self.limits: dict[tuple[Any, Any], float] = {}
        self.floor = min([config.threshold, *(o.threshold for o in config.overrides)])
        self._lookup: WindowLookup | None | bool = False  # False: not imported yet
        # (service, model, agent) → [largest ratio, tokens, window, examples]
        self.pending: dict[tuple[str, str, str], list[Any]] = {}
        self.last_evaluation: float | None = None

    def prepare(self) -> None:
        """Import the price book and load its data at start: the first batch would otherwise pay it."""
        if self._lookup is False:
            self._lookup = price_book_lookup(self.config.prices_file)
        if self._lookup:
            load_price_data(self.config.prices_file)

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        tokens = cols.attribute_rows(TOKENS)  # only the spans that carry a count
        picked = list(compress(tokens, map(NUMBER_TYPES.__contains__, map(type, tokens.values()))))  # not bool/text
        if not picked:
            return
        counts: list[Any] = list(map(tokens.__getitem__, picked))  # numbers (picked above)
        models = self._models(cols, picked)
        providers = cols.values_at(PROVIDER, picked)
        pairs = list(zip(providers, models))
        known = list(map(self.limits.get, pairs))
        for j in where_equal(known, None):  # first sight of a (provider, model): look its window up
            known[j] = self.limit_of(*pairs[j])
        limits = cast(list[float], known)  # every None was just looked up
        over = where(map(gt, counts, limits), len(pairs))
        if over:
            self._overflowing(cols, [picked[j] for j in over], [counts[j] for j in over], [pairs[j] for j in over])

    def _models(self, cols: SpanColumns, picked: list[int]) -> Any:
        """`gen_ai.response.model`, else `gen_ai.request.model`, of the picked spans."""
        models = cols.values_at("gen_ai.response.model", picked)
        if cols.present("gen_ai.request.model"):
            models = [m or r for m, r in zip(models, cols.values_at("gen_ai.request.model", picked))]
        return models

    def _overflowing(self, cols: SpanColumns, indices: list[int], counts: list[Any],
                     pairs: list[tuple[Any, Any]]) -> None:
        agents = cols.values_at("gen_ai.agent.name", indices)
        for i, count, pair, agent in zip(indices, counts, pairs, agents):
            if pair not in self.windows:  # the cache was cleared by a later first sight in this batch
                self.limit_of(*pair)
            self._record((cols.service[i], str(pair[1]), str(agent or "")), count, self.windows[pair] or 0,
                         cols.trace_id[i], cols.span_id[i])

    def _record(self, key: tuple[str, str, str], tokens: float, window: int, trace_id: bytes,
                span_id: bytes) -> None:
        slot = self.pending.get(key)
        if slot is None:
            if not self.admit(self.pending, key):
                return
            self.pending[key] = slot = [0.0, 0, window, Examples()]
        if tokens / window > slot[0]:
            slot[0], slot[1], slot[2] = tokens / window, tokens, window
        slot[3].add(trace_id, span_id)

    def limit_of(self, provider: Any, model: Any) -> float:
        """Tokens above which a call to this model is judged (floor × window; infinite for an
        unknown window), cached per (provider, model) with the window itself."""
        window = self.window_of(provider, str(model)) if model else None
        limit = self.floor * window if window else math.inf
        if len(self.limits) >= MAX_CACHED:
            self.limits.clear()
            self.windows.clear()
        self.limits[(provider, model)] = limit
        self.windows[(provider, model)] = window
        return limit

    def window_of(self, provider: Any, model: str) -> int | None:
        """Context window in tokens: `context_windows` first, then the genai price book."""
        window = self.overrides_by_model.get(model.lower())
        if window is None:
            if self._lookup is False:
                self._lookup = price_book_lookup(self.config.prices_file)
            if self._lookup:
                window = self._safe_lookup(provider, model)
        return window

    def _safe_lookup(self, provider: Any, model: str) -> int | None:
        try:
            return self._lookup(str(provider) if provider else None, model)  # type: ignore[misc, operator]
        except Exception:
            log.exception("context window lookup failed", extra={"kv": {"model": model}})
            return None

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        start = self.last_evaluation if self.last_evaluation is not None else now
        self.last_evaluation = now
        out = []
        for (service, model, agent), (ratio, tokens, window, examples) in self.pending.items():
            subject = {"service": service, "model": model}
            if agent:
                subject["agent"] = agent
            threshold = self.threshold_for(subject, self.config.threshold)
            if ratio <= threshold:
                continue
            out.append(Observation(
                self.kind, subject, round(ratio, 4), threshold, "ratio", (start, now), self.config.severity,
                f"{agent or service} sent {tokens:g} input tokens to {model}: {ratio:.1%} of its "
                f"{window}-token context window (threshold {threshold:.0%})", examples, firing=True))
        self.pending = {}
        return out
