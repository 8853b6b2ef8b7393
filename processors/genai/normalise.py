"""One span's canonical attributes, from whatever families it speaks.

`Normaliser.span` reads a span's recognised attributes (already picked out by the
processor) and returns what to ADD: canonical keys the span lacks, never a change to one
it has. It also returns the span's session candidate and, when a cost can be priced or the
model is unknown, says so. No JSON is parsed except Langfuse's usage/cost fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from processors.genai import aliases as A
from processors.genai import tokens as T
from processors.genai.prices import PriceBook, normalise_provider
from processors.genai.values import as_str

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
Attrs = Mapping[str, AnyValue]
Value = str | int | float


class Writes(dict[str, Value]):
    """The keys to add to one span: a key the span already has is never added."""

    def __init__(self, attrs: Attrs) -> None:
        super().__init__()
        self.attrs = attrs

    def add(self, key: str, value: Value | None) -> None:
        if value is not None and key not in self.attrs and key not in self:
            self[key] = value

    def text(self, key: str) -> str | None:
        """The span's value for a canonical key, or the one about to be added."""
        value = as_str(self.attrs.get(key))
        return value if value is not None else self.get(key)  # type: ignore[return-value]


@dataclass
class Result:
    writes: Writes
    session: tuple[int, str] | None = None  # (priority, value): lower priority wins per trace


class Normaliser:
    def __init__(self, enabled: frozenset[str], book: PriceBook | None,
                 on_unpriced: Callable[[str], None] = lambda model: None) -> None:
        self.on = {source: source in enabled for source in A.SOURCES}
        self.book = book  # None: cost is not computed (write_cost: false)
        self.on_unpriced = on_unpriced
        self.strings = [(c, k) for c, k, owners in A.STRING_ALIASES if owners & enabled]
        self.operations = [(k, m) for k, owners, m in A.OPERATION_ALIASES if owners & enabled]
        self.providers = [k for k, owners in A.PROVIDER_ALIASES if owners & enabled]
        self.sessions = [(i, k) for i, (k, owners) in enumerate(A.SESSION_KEYS) if owners & enabled]

    # -- the entry point ---------------------------------------------------------------------------
    def span(self, attrs: Attrs, span: Any, scope_name: str) -> Result | None:
        """What to add to this span, or None when nothing marks it as GenAI."""
        bridge = self._agents_type(attrs, span.name, scope_name)
        if bridge is None and attrs.keys().isdisjoint(A.KNOWN_KEYS):
            return None
        new = Writes(attrs)
        for canonical, key in self.strings:
            new.add(canonical, as_str(attrs.get(key)))
        new.add(A.OPERATION, self._operation(attrs, bridge))
        new.add(A.PROVIDER, self._provider(attrs))
        self._roles(attrs, span.name, bridge, new)
        usage = self._tokens(attrs, scope_name, new)
        if new.text(A.OPERATION) is None and usage.any() and self._model(new) is not None:
            new.add(A.OPERATION, "chat")  # a model and token usage but no stated role: an inference call
        new.add(A.COST, self._cost(attrs, usage, new))
        new.add(A.ERROR_TYPE, self._error_type(attrs, span))
        return Result(new, self._session(attrs))

    # -- operation, provider, roles ---------------------------------------------------------------
    def _operation(self, attrs: Attrs, bridge: str | None) -> str | None:
        for key, mapping in self.operations:
            value = as_str(attrs.get(key))
            if value is not None and value.lower() in mapping:
                return mapping[value.lower()]
        if bridge is not None:
            return A.AGENTS_SPAN_TYPES.get(bridge)
        model = self._adk_llm_model(attrs) if self.on[A.GOOGLE_ADK] else None
        if model is not None:  # ADK's call_llm: Gemini's operation is generate_content
            return "generate_content" if model.startswith("gemini") else "chat"
        return None

    def _provider(self, attrs: Attrs) -> str | None:
        for key in self.providers:
            value = as_str(attrs.get(key))
            if value is None or value == A.ADK_SYSTEM:
                continue
            if key == "llm.provider" and value.lower() == "azure":
                system = as_str(attrs.get("llm.system")) or ""
                return "azure.ai.openai" if system.lower() == "openai" else "azure.ai.inference"
            return normalise_provider(value)
        model = self._adk_llm_model(attrs) if self.on[A.GOOGLE_ADK] else None
        return "gcp.gen_ai" if model and model.startswith("gemini") else None

    def _adk_llm_model(self, attrs: Attrs) -> str | None:
        """Google ADK's call_llm span: gen_ai.system is ADK itself, the model is the request model."""
        if as_str(attrs.get("gen_ai.system")) != A.ADK_SYSTEM:
            return None
        return (as_str(attrs.get(A.REQUEST_MODEL)) or "").lower() or None

    def _roles(self, attrs: Attrs, span_name: str, bridge: str | None, new: Writes) -> None:
        """Agent and tool names that families carry under a generic name, by span role."""
        role_key = {"agent": A.AGENT_NAME, "tool": A.TOOL_NAME, "function": A.TOOL_NAME}
        if self.on[A.OPENLLMETRY]:
            kind = (as_str(attrs.get("traceloop.span.kind")) or "").lower()
            if kind in ("agent", "tool"):
                new.add(role_key[kind], as_str(attrs.get(A.TRACELOOP_ENTITY)))
        if self.on[A.LANGFUSE]:
            kind = (as_str(attrs.get("langfuse.observation.type")) or "").lower()
            if kind in ("agent", "tool"):  # Langfuse names the observation by the span name
                new.add(role_key[kind], span_name or None)
        if self.on[A.OPENINFERENCE] and (as_str(attrs.get("openinference.span.kind")) or "").upper() == "TOOL":
            new.add(A.TOOL_CALL_ID, as_str(attrs.get(A.OPENINFERENCE_TOOL_ID)))
        if bridge in ("agent", "function"):
            new.add(role_key[bridge], as_str(attrs.get(A.BRIDGE_NAME)))

    def _agents_type(self, attrs: Attrs, span_name: str, scope_name: str) -> str | None:
        """The OpenAI Agents SDK span type of a bridge span (Logfire, OTel bridges), or None."""
        if not self.on[A.OPENAI_AGENTS]:
            return None
        template = as_str(attrs.get(A.LOGFIRE_TEMPLATE))
        if template is None and scope_name not in A.AGENTS_SCOPES:
            return None
        if template is None and span_name in A.AGENTS_SPAN_TYPES:
            return span_name
        text = template or span_name
        for prefix, kind in A.AGENTS_NAME_PREFIXES:
            if text.startswith(prefix):
                return kind
        return None

    # -- tokens and cost --------------------------------------------------------------------------
    def _tokens(self, attrs: Attrs, scope_name: str, new: Writes) -> T.Usage:
        """Fill the missing canonical counts from the first family that reports any; return the
        span's resulting usage (existing canonical counts win)."""
        have = T.canonical_usage(attrs)
        source = self._source_usage(attrs, scope_name, have, new)
        merged = T.Usage(*(getattr(have, name) if getattr(have, name) is not None else getattr(source, name)
                           for _, name in T.CANONICAL_FIELDS))
        for key, name in T.CANONICAL_FIELDS:
            new.add(key, getattr(source, name))
        return merged

    def _source_usage(self, attrs: Attrs, scope_name: str, have: T.Usage, new: Writes) -> T.Usage:
        usage = T.Usage()
        if self.on[A.OTEL_LEGACY]:
            usage = T.inclusive_usage(attrs, A.OTEL_LEGACY_TOKENS,
                                      A.OPENLLMETRY_TOTAL if self.on[A.OPENLLMETRY] else None)
            if usage.any() and self._raw_anthropic(attrs, scope_name, new):
                usage = T.fold_cache_into_input(self._with_cache(usage, have))
        if not usage.any() and self.on[A.OPENINFERENCE]:
            usage = T.inclusive_usage(attrs, A.OPENINFERENCE_TOKENS)
        if not usage.any() and self.on[A.LANGFUSE] and A.LANGFUSE_USAGE in attrs:
            usage = T.langfuse_usage(attrs[A.LANGFUSE_USAGE].string_value)
        if have.input is None and T.cache_exceeds_input(self._with_cache(usage, have)):
            usage = T.fold_cache_into_input(self._with_cache(usage, have))
        return usage

    @staticmethod
    def _with_cache(usage: T.Usage, have: T.Usage) -> T.Usage:
        """The source counts with the span's canonical cache counts where the source has none."""
        return T.Usage(usage.input, usage.output,
                       usage.cache_read if usage.cache_read is not None else have.cache_read,
                       usage.cache_creation if usage.cache_creation is not None else have.cache_creation,
                       usage.reasoning)

    def _raw_anthropic(self, attrs: Attrs, scope_name: str, new: Writes) -> bool:
        """AgentOps records Anthropic's raw `input_tokens` (cache excluded) as prompt_tokens."""
        provider = new.text(A.PROVIDER)
        from_agentops = "agentops.span.kind" in attrs or scope_name.startswith("agentops")
        return self.on[A.AGENTOPS] and from_agentops and provider == "anthropic"

    @staticmethod
    def _model(new: Writes) -> str | None:
        """The model to price: the response model (exact version) before the requested one."""
        return new.text(A.RESPONSE_MODEL) or new.text(A.REQUEST_MODEL)

    def _cost(self, attrs: Attrs, usage: T.Usage, new: Writes) -> float | None:
        """The span's own cost if it has one, else tokens × the model's cached rates."""
        if A.COST in attrs:
            return None
        cost = T.span_cost(attrs, self.on[A.OPENINFERENCE], self.on[A.LANGFUSE])
        if cost is not None or self.book is None or not (usage.input or usage.output):
            return cost
        model = self._model(new)
        rates = self.book.rates(new.text(A.PROVIDER), model)
        if rates is None:
            self.on_unpriced(model or "")
            return None
        return rates.cost(usage)

    # -- errors and sessions ----------------------------------------------------------------------
    def _error_type(self, attrs: Attrs, span: Any) -> str | None:
        failed = span.status.code == STATUS_ERROR
        if not failed and self.on[A.LANGFUSE]:
            failed = (as_str(attrs.get(A.LANGFUSE_LEVEL)) or "").upper() == "ERROR"
        if not failed:
            return None
        found = as_str(attrs.get("exception.type"))
        if found is None:
            for event in span.events:
                if event.name == "exception":
                    found = next((kv.value.string_value for kv in event.attributes
                                  if kv.key == "exception.type" and kv.value.string_value), None)
                    break
        return found or "_OTHER"  # the semantic conventions' value when the type is unknown

    def _session(self, attrs: Attrs) -> tuple[int, str] | None:
        for priority, key in self.sessions:
            value = as_str(attrs.get(key))
            if value is not None:
                return priority, value
        return None
