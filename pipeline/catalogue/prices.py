"""Prices and context windows per (provider, model).

Source: the `genai-prices` package's bundled data (works offline; never auto-updated
here), corrected or extended by a user override file. Each (provider, model) is looked up
ONCE and kept as per-token rates (`Rates`); a span's cost is then a few multiplications,
so no pricing function runs per span. Unknown models are cached as unknown too.

Matching: the model name as the span gives it (then, for `vendor/model` names, the part
after the last `/`). A provider genai-prices knows narrows the search, falling back to
any provider's model of that name; a provider it does not know (ollama, vllm, a private
gateway) gives no price, so self-hosted models are never charged at someone else's rate.

Override file (`prices_file:`), prices in USD per million tokens:

    models:
      - model: my-finetune            # matched case-insensitively
        provider: openai              # optional: without it, any provider
        input: 1.0                    # uncached input
        output: 2.0
        cache_read: 0.1               # optional, default = input
        cache_write: 1.25             # optional, default = input
        context_window: 128000        # optional; an entry may give only this
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt, ValidationError, model_validator

from pipeline.catalogue.providers import normalise_provider

PER_MILLION = 1_000_000
MAX_ENTRIES = 4096  # distinct (provider, model) pairs kept; a flood of made-up names cannot grow memory

# gen_ai.provider.name → genai-prices provider id, where they differ.
PRICES_PROVIDER = {
    "azure.ai.openai": "azure", "azure.ai.inference": "azure", "aws.bedrock": "aws",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google",
    "x_ai": "x-ai", "mistral_ai": "mistral",
}


class TokenCounts(Protocol):
    """One call's canonical, inclusive token counts (cache ⊂ input, reasoning ⊂ output); None = not said.

    The genai processor's `Usage` is one."""

    @property
    def input(self) -> int | None: ...
    @property
    def output(self) -> int | None: ...
    @property
    def cache_read(self) -> int | None: ...
    @property
    def cache_creation(self) -> int | None: ...
    @property
    def reasoning(self) -> int | None: ...


@dataclass(frozen=True)
class Tiered:
    """USD per token with genai-prices' cliff tiers: past a tier's start (total input
    tokens), every token costs the tier's price."""

    base: float
    tiers: tuple[tuple[int, float], ...]

    def at(self, total_input: int) -> float:
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base


Rate = float | Tiered  # USD per token; a plain float for the usual untiered price


def _at(rate: Rate, total_input: int) -> float:
    return rate if type(rate) is float else rate.at(total_input)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Rates:
    """One model's per-token prices. A cache or reasoning rate of None bills those tokens at
    the plain input or output rate, as genai-prices does when a model has no such price."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    per_request: float = 0.0

    def cost(self, usage: TokenCounts) -> float:
        """USD for one call with these (canonical, inclusive) counts."""
        total_in, out = usage.input or 0, usage.output or 0
        # Parts with a price of their own leave the input (output) bucket; unpriced parts stay in it.
        cache_read = min(usage.cache_read or 0, total_in) if self.cache_read is not None else 0
        cache_write = min(usage.cache_creation or 0, total_in - cache_read) if self.cache_write is not None else 0
        reasoning = min(usage.reasoning or 0, out) if self.reasoning is not None else 0
        cost = (total_in - cache_read - cache_write) * _at(self.input, total_in)
        cost += (out - reasoning) * _at(self.output, total_in)
        if cache_read:
            cost += cache_read * _at(self.cache_read, total_in)  # type: ignore[arg-type]
        if cache_write:
            cost += cache_write * _at(self.cache_write, total_in)  # type: ignore[arg-type]
        if reasoning:
            cost += reasoning * _at(self.reasoning, total_in)  # type: ignore[arg-type]
        return cost + self.per_request


@dataclass(frozen=True)
class Entry:
    rates: Rates | None
    context_window: int | None


class PriceOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    provider: str | None = None
    input: NonNegativeFloat | None = None
    output: NonNegativeFloat | None = None
    cache_read: NonNegativeFloat | None = None
    cache_write: NonNegativeFloat | None = None
    context_window: PositiveInt | None = None

    @model_validator(mode="after")
    def _prices_together(self) -> "PriceOverride":
        priced = [v is not None for v in (self.input, self.output, self.cache_read, self.cache_write)]
        if any(priced) and (self.input is None or self.output is None):
            raise ValueError(f"model {self.model!r}: give both input and output prices (USD per million tokens)")
        if not any(priced) and self.context_window is None:
            raise ValueError(f"model {self.model!r}: give prices, a context_window, or both")
        return self

    def rates(self) -> Rates | None:
        if self.input is None or self.output is None:
            return None
        per = lambda usd: usd / PER_MILLION  # noqa: E731 - per-million → per-token
        return Rates(input=per(self.input), output=per(self.output),
                     cache_read=per(self.cache_read) if self.cache_read is not None else None,
                     cache_write=per(self.cache_write) if self.cache_write is not None else None)


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[PriceOverride] = []


def load_overrides(path: str | os.PathLike[str]) -> dict[tuple[str, str], PriceOverride]:
    """Parse and check an override file; raises ValueError with a readable reason."""
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ValueError(f"cannot read prices_file {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"prices_file {str(path)!r} is not valid YAML: {exc}") from exc
    try:
        parsed = PriceFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"prices_file {str(path)!r}: {problems}") from exc
    return {(normalise_provider(o.provider) if o.provider else "", o.model.lower()): o for o in parsed.models}


class PriceBook:
    """Rates and context windows, looked up once per (provider, model) and cached."""

    def __init__(self, overrides: dict[tuple[str, str], PriceOverride] | None = None) -> None:
        self.overrides = overrides or {}
        self._cache: dict[tuple[str, str], Entry] = {}
        self.lookups = 0  # how many times the bundled data was searched (tests check the caching)

    def rates(self, provider: str | None, model: str | None) -> Rates | None:
        return self.entry(provider, model).rates if model else None

    def context_window(self, provider: str | None, model: str | None) -> int | None:
        return self.entry(provider, model).context_window if model else None

    def entry(self, provider: str | None, model: str) -> Entry:
        key = (provider or "", model.lower())
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            found = self._cache[key] = self._lookup(*key)
        return found

    def _lookup(self, provider: str, model: str) -> Entry:
        override = self._override(provider, model)
        bundled = Entry(None, None)
        if override is None or override.rates() is None or override.context_window is None:
            self.lookups += 1
            bundled = bundled_entry(provider, model)
        rates = override.rates() if override else None
        window = override.context_window if override and override.context_window else None
        return Entry(rates or bundled.rates, window or bundled.context_window)


    def _override(self, provider: str, model: str) -> PriceOverride | None:
        """The override for the name, then (a `vendor/model` name, as LiteLLM gives it) for the
        part after the last `/`, as the bundled prices are matched."""
        for name in dict.fromkeys((model, model.rsplit("/", 1)[-1])):
            found = self.overrides.get((provider, name)) or self.overrides.get(("", name))
            if found is not None:
                return found
        return None


def bundled_entry(provider: str, model: str) -> Entry:
    """genai-prices' rates and context window for the pair, prices as of now."""
    try:
        info = bundled_model(provider, model)
        if info is None:
            return Entry(None, None)
        return Entry(rates_from_prices(info.get_prices(datetime.now(tz=UTC))), info.context_window)
    except Exception:  # a data or matching error in the package: price nothing rather than fail spans
        return Entry(None, None)


def bundled_model(provider: str, model: str) -> Any | None:
    """genai-prices' ModelInfo for the pair, or None (see the module docstring for the rules)."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    prices_id = PRICES_PROVIDER.get(provider, provider) if provider else None
    if prices_id is not None:
        try:
            snapshot.find_provider(None, prices_id, None)
        except LookupError:
            return None  # a provider genai-prices does not list: self-hosted or private
    refs = [model] + ([model.rsplit("/", 1)[1]] if "/" in model else [])
    for ref in refs:
        for pid in ([prices_id, None] if prices_id else [None]):
            try:
                return snapshot.find_provider_model(ref, None, pid, None)[1]
            except LookupError:
                continue
    return None


def rates_from_prices(price: Any) -> Rates | None:
    """genai-prices ModelPrice (Decimals or tiered, per million) → per-token float Rates."""
    inp, out = _rate(getattr(price, "input_mtok", None)), _rate(getattr(price, "output_mtok", None))
    if inp is None and out is None:
        return None
    requests = getattr(price, "requests_kcount", None)
    return Rates(input=inp if inp is not None else 0.0, output=out if out is not None else 0.0,
                 cache_read=_rate(getattr(price, "cache_read_mtok", None)),
                 cache_write=_rate(getattr(price, "cache_write_mtok", None)),
                 reasoning=_rate(getattr(price, "output_reasoning_mtok", None)),
                 per_request=float(requests) / 1000 if requests is not None else 0.0)


def _rate(value: Any) -> Rate | None:
    if value is None:
        return None
    if hasattr(value, "tiers"):
        return Tiered(float(value.base) / PER_MILLION,
                      tuple((tier.start, float(tier.price) / PER_MILLION) for tier in value.tiers))
    return float(value) / PER_MILLION


_books: dict[str | None, tuple[float, float, PriceBook]] = {}  # path → (mtime, checked at, book)
RECHECK_SECONDS = 1.0  # how often a caller's lookup may stat the override file for changes


def price_book(prices_file: str | None = None) -> PriceBook:
    """The shared PriceBook for an override file (or none): the genai processor and the
    context-overflow detector read the same cache. A changed file gives a new book; the
    file is looked at no more than once a second, so callers may ask per span."""
    now = time.monotonic()
    known = _books.get(prices_file)
    if known is not None and (prices_file is None or now - known[1] < RECHECK_SECONDS):
        return known[2]
    mtime = os.stat(prices_file).st_mtime if prices_file else 0.0
    book = known[2] if known is not None and known[0] == mtime else PriceBook(
        load_overrides(prices_file) if prices_file else None)
    _books[prices_file] = (mtime, now, book)
    return book


def context_window(provider: str | None, model: str | None, prices_file: str | None = None) -> int | None:
    """The model's context window in tokens (override file first, then genai-prices), or None."""
    return price_book(prices_file).context_window(provider, model)
