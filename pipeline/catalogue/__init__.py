"""The model catalogue: prices and context windows per (provider, model), and provider names.

Its own room because two components read it and neither may import the other: the `genai`
processor prices spans with it (`gen_ai.usage.cost`, which the `cost_budget` detector then
sums), and the triggers connector's `context_overflow` detector asks it for a model's context
window.

- prices.py: `PriceBook` (rates and context windows, looked up once per (provider, model) and
  cached), `price_book(prices_file)` (the one shared book per override file, so the processor
  and the detector read one cache), `context_window(provider, model)`, `load_overrides`;
- providers.py: `normalise_provider` and its table of the provider values seen in the wild.

Data: the `genai-prices` package's bundled snapshot (offline, never auto-updated here),
corrected or extended by the user's `prices_file`.
"""
from __future__ import annotations

from pipeline.catalogue.prices import PriceBook, Rates, TokenCounts, context_window, load_overrides, price_book
from pipeline.catalogue.providers import normalise_provider

__all__ = ["PriceBook", "Rates", "TokenCounts", "context_window", "load_overrides", "normalise_provider",
           "price_book"]
