"""Token arithmetic: every family's counts as the canonical, inclusive OpenTelemetry numbers.

Canonical meaning: input tokens INCLUDE cache reads and cache writes; output tokens
INCLUDE reasoning tokens. Per family:
- OpenTelemetry (new and old names), OpenInference, OpenLLMetry: already inclusive.
- Langfuse `usage_details`: disjoint buckets (`input` excludes `input_cached_tokens`,
  `cache_read_input_tokens` ...; `output` excludes `output_reasoning_tokens`), so the
  canonical input is the sum of every input-side bucket, the output of every output-side one.
  Except when it holds OpenAI's raw usage object, as langfuse.openai sends it: `prompt_tokens`
  (Responses API: `input_tokens`) already INCLUDES `prompt_tokens_details.cached_tokens`, and
  `completion_tokens` the `completion_tokens_details.reasoning_tokens`; those are read as they
  are (adding the nested counts to the input would count the cached tokens twice).
- Raw Anthropic usage (`input_tokens` excludes `cache_read_input_tokens` and
  `cache_creation_input_tokens`), as AgentOps records it in `gen_ai.usage.prompt_tokens`:
  the cache counts are added back. The same correction applies to any source whose
  reported input is smaller than its own cache counts, which an inclusive count cannot be.
"""
from __future__ import annotations

import json
import math
from typing import Mapping, NamedTuple

from processors.genai import aliases as A
from processors.genai.values import Scalar, amount, count

Attrs = Mapping[str, Scalar]


class Usage(NamedTuple):  # a tuple, not a dataclass: several are built per span on the hot path
    """Canonical (inclusive) token counts; None where the span says nothing."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_creation: int | None = None
    reasoning: int | None = None

    def any(self) -> bool:
        return self != NOTHING


NOTHING = Usage()


CANONICAL_FIELDS = ((A.INPUT_TOKENS, "input"), (A.OUTPUT_TOKENS, "output"), (A.CACHE_READ, "cache_read"),
                    (A.CACHE_CREATION, "cache_creation"), (A.REASONING, "reasoning"))


def canonical_usage(attrs: Attrs) -> Usage:
    """What the span already says under the canonical names."""
    get = attrs.get
    return Usage(count(get(A.INPUT_TOKENS)), count(get(A.OUTPUT_TOKENS)), count(get(A.CACHE_READ)),
                 count(get(A.CACHE_CREATION)), count(get(A.REASONING)))


def inclusive_usage(attrs: Attrs, keys: tuple[str, ...], total_key: str | None = None) -> Usage:
    """An inclusive family's counts; a missing input or output is derived from the total."""
    get = attrs.get
    inp, out, total = count(get(keys[0])), count(get(keys[1])), count(get(keys[5]))
    if total is None and total_key is not None:
        total = count(get(total_key))
    if total is not None:
        if inp is None and out is not None and total >= out:
            inp = total - out
        elif out is None and inp is not None and total >= inp:
            out = total - inp
    return Usage(inp, out, count(get(keys[2])), count(get(keys[3])), count(get(keys[4])))


def with_cache_from(usage: Usage, have: Usage) -> Usage:
    """The source's counts, taking the cache counts the span states canonically where the
    source has none (OpenLLMetry: old-name prompt tokens beside new-name cache counts)."""
    if (usage.cache_read is None and have.cache_read is not None) or (
            usage.cache_creation is None and have.cache_creation is not None):
        return Usage(usage.input, usage.output,
                     usage.cache_read if usage.cache_read is not None else have.cache_read,
                     usage.cache_creation if usage.cache_creation is not None else have.cache_creation,
                     usage.reasoning)
    return usage


def fold_cache_into_input(usage: Usage) -> Usage:
    """Raw Anthropic input (cache excluded) → inclusive input."""
    if usage.input is None:
        return usage
    return Usage(usage.input + (usage.cache_read or 0) + (usage.cache_creation or 0), *usage[1:])


def cache_exceeds_input(usage: Usage) -> bool:
    """True when the input cannot be inclusive: its own cache parts are larger."""
    cached = (usage.cache_read or 0) + (usage.cache_creation or 0)
    return usage.input is not None and cached > usage.input


def langfuse_usage(text: Scalar) -> Usage:
    """Langfuse `usage_details` (JSON of disjoint buckets, or OpenAI's raw usage) → inclusive counts."""
    document = json_object(text if isinstance(text, str) else None)
    if not OPENAI_USAGE_KEYS.isdisjoint(document):
        return openai_usage(document)
    sums: dict[str, int] = {}
    for key, value in _numbers(document).items():
        bucket = _langfuse_bucket(key.lower())
        if bucket is not None:
            sums[bucket] = sums.get(bucket, 0) + int(value)
    if not sums:
        return Usage()
    input_side = [sums[b] for b in ("input", "cache_read", "cache_creation") if b in sums]
    output_side = [sums[b] for b in ("output", "reasoning") if b in sums]
    return Usage(input=sum(input_side) if input_side else None,
                 output=sum(output_side) if output_side else None,
                 cache_read=sums.get("cache_read"), cache_creation=sums.get("cache_creation"),
                 reasoning=sums.get("reasoning"))


# Keys only OpenAI's usage object has (Langfuse's own buckets are input, output, input_cached_tokens ...).
OPENAI_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "prompt_tokens_details",
                               "completion_tokens_details", "input_tokens_details", "output_tokens_details"})


def openai_usage(usage: dict) -> Usage:
    """OpenAI's usage object (Chat Completions or Responses shape): inclusive as it stands."""
    inp = count(_number(usage.get("prompt_tokens", usage.get("input_tokens"))))
    out = count(_number(usage.get("completion_tokens", usage.get("output_tokens"))))
    in_details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
    out_details = usage.get("completion_tokens_details", usage.get("output_tokens_details"))
    cached = count(_number(in_details.get("cached_tokens"))) if isinstance(in_details, dict) else None
    reasoning = count(_number(out_details.get("reasoning_tokens"))) if isinstance(out_details, dict) else None
    total = count(_number(usage.get("total_tokens")))
    if total is not None and inp is None and out is not None and total >= out:
        inp = total - out
    return Usage(inp, out, cached, None, reasoning)


def json_model(text: Scalar) -> str | None:
    """The `model` named in a JSON object string (OpenInference's invocation parameters)."""
    model = json_object(text if isinstance(text, str) else None).get("model")
    return model if isinstance(model, str) and model else None


def _number(value: object) -> float | None:
    """A JSON number (not a bool), or None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _langfuse_bucket(key: str) -> str | None:
    """Which side a Langfuse usage type counts on; `total` is not a bucket."""
    if key.startswith("total"):
        return None
    if "cache" in key and ("read" in key or "cached" in key or "hit" in key):
        return "cache_read"
    if "cache" in key and ("creation" in key or "write" in key or "create" in key):
        return "cache_creation"
    if "reasoning" in key or "thinking" in key:
        return "reasoning"
    if "input" in key or "prompt" in key:
        return "input"
    if "output" in key or "completion" in key:
        return "output"
    return None


def langfuse_cost(text: str | None) -> float | None:
    """Langfuse `cost_details` (JSON, USD per bucket): its `total`, else the sum of the buckets."""
    details = _json_numbers(text)
    if not details:
        return None
    if "total" in details:
        return float(details["total"])
    return float(sum(details.values()))


def span_cost(attrs: Attrs, openinference: bool, langfuse: bool) -> float | None:
    """A cost the instrumentation computed under a family's name (USD): it wins over ours."""
    cost = None
    if openinference:
        cost = amount(attrs.get(A.OPENINFERENCE_COST))
    if cost is None and langfuse:
        value = attrs.get(A.LANGFUSE_COST)
        cost = langfuse_cost(value if isinstance(value, str) else None)
    return cost


def json_object(text: str | None) -> dict:
    """A JSON object string as a dict; anything malformed (or not an object) reads as empty."""
    if not text:
        return {}
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def _json_numbers(text: str | None) -> dict[str, float]:
    """The numeric members of a JSON object string; anything malformed reads as empty."""
    return _numbers(json_object(text))


def _numbers(document: dict) -> dict[str, float]:
    return {str(k): v for k, v in document.items()  # json accepts Infinity and NaN: keep finite values only
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf}
