"""One span's canonical attributes, from whatever families it speaks.

`Normaliser.span` takes a span's recognised attributes (picked out and decoded once by the
processor) and returns what to ADD: canonical keys the span lacks, never a change to one
it has; plus the span's session candidate. When a span has token usage but its model has
no price, `on_unpriced` is told. No JSON is parsed except Langfuse's usage/cost fields and
OpenInference's invocation parameters (for the requested model).

Costs are rounded to `COST_DIGITS` significant digits: a product of token counts and per-token
rates carries binary noise (2.4000000000000003e-07), which the stores would keep as text.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

from pipeline.catalogue import PriceBook, normalise_provider
from processors.genai import aliases as A
from processors.genai import tokens as T
from processors.genai.values import Scalar, text

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
Attrs = Mapping[str, Scalar]
Value = str | int | float
ROLE_KEY = {"agent": A.AGENT_NAME, "tool": A.TOOL_NAME, "function": A.TOOL_NAME}
MAX_PLANS = 4096  # distinct key sets remembered; instrumentations produce a few dozen
COST_DIGITS = 12  # significant digits of a cost: far below a cent's billionth, above float noise


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
        value = text(self.attrs.get(key))
        return value if value is not None else self.get(key)  # type: ignore[return-value]


class SpanFacts(NamedTuple):
    """What the normaliser reads of a span besides its attributes (the compiled picker gives them)."""

    name: str
    status_code: int
    exception_type: str | None  # of the span's first `exception` event, when a non-empty string


class Result(NamedTuple):
    writes: Writes
    session: tuple[int, str] | None  # (priority, value): the lowest priority of a trace wins


class Plan(NamedTuple):
    """The alias rows that can apply to spans with a given set of keys. Spans of one
    instrumentation share their key set, so a plan is built once and reused: per span only
    the rows whose keys are present run."""

    strings: tuple[tuple[str, str], ...]
    operations: tuple[tuple[str, dict[str, str]], ...]
    providers: tuple[str, ...]
    sessions: tuple[tuple[int, str], ...]
    genai: bool  # holds a key that marks a span as GenAI
    roles: bool
    canonical_tokens: bool
    token_family: str | None  # the family whose token counts fill the canonical ones
    costs: bool
    invocation: tuple[str, ...]  # OpenInference invocation-parameter keys the span has


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
        self.total_key = A.OPENLLMETRY_TOTAL if self.on[A.OPENLLMETRY] else None
        legacy = frozenset(k for k in (*A.OTEL_LEGACY_TOKENS, self.total_key) if k)
        families = ((A.OTEL_LEGACY, legacy),
                    (A.OPENINFERENCE, frozenset(A.OPENINFERENCE_TOKENS)), (A.LANGFUSE, frozenset({A.LANGFUSE_USAGE})))
        self.token_families = [(family, keys) for family, keys in families if self.on[family]]
        self._plans: dict[tuple[str, ...], Plan] = {}

    def plan(self, keys: tuple[str, ...]) -> Plan:
        found = self._plans.get(keys)
        if found is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            found = self._plans[keys] = self._make_plan(frozenset(keys))
        return found

    def _make_plan(self, keys: frozenset[str]) -> Plan:
        return Plan(strings=tuple((c, k) for c, k in self.strings if k in keys),
                    operations=tuple((k, m) for k, m in self.operations if k in keys),
                    providers=tuple(k for k in self.providers if k in keys),
                    sessions=tuple((i, k) for i, k in self.sessions if k in keys),
                    genai=not keys.isdisjoint(A.KNOWN_KEYS), roles=not keys.isdisjoint(A.ROLE_KEYS),
                    canonical_tokens=not keys.isdisjoint(A.CANONICAL_TOKENS),
                    token_family=next((family for family, family_keys in self.token_families
                                       if not keys.isdisjoint(family_keys)), None),
                    costs=not keys.isdisjoint(A.COST_KEYS),
                    invocation=tuple(k for k in A.OPENINFERENCE_INVOCATION if k in keys) if self.on[A.OPENINFERENCE]
                    else ())

    # -- the entry point ---------------------------------------------------------------------------
    def span(self, attrs: Attrs, span: SpanFacts, scope_name: str) -> Result | None:
        """What to add to this span, or None when nothing marks it as GenAI."""
        plan = self.plan(tuple(attrs))
        bridge = self._agents_type(attrs, span.name, scope_name)
        if bridge is None and not plan.genai:
            return None
        new = Writes(attrs)
        for key in plan.invocation:  # the requested model, before llm.model_name (the response's)
            new.add(A.REQUEST_MODEL, T.json_model(attrs[key]))
        for canonical, key in plan.strings:
            new.add(canonical, text(attrs[key]))
        new.add(A.OPERATION, self._operation(attrs, plan, bridge))
        if self._calls_model(new):
            new.add(A.PROVIDER, self._provider(attrs, plan, span.name))
        if plan.roles or bridge is not None:
            self._roles(attrs, span.name, bridge, new)
        usage = self._tokens(attrs, plan, scope_name, new)
        if usage.any() and new.text(A.OPERATION) is None and self._model(new) is not None:
            new.add(A.OPERATION, "chat")  # a model and token usage but no stated role: an inference call
        if (usage.input or usage.output or plan.costs) and A.COST not in attrs:
            cost = self._cost(attrs, plan, usage, new)
            new.add(A.COST, float(f"{cost:.{COST_DIGITS}g}") if cost is not None else None)
        new.add(A.ERROR_TYPE, self._error_type(attrs, span))
        return Result(new, self._session(attrs, plan))

    # -- operation, provider, roles ---------------------------------------------------------------
    def _operation(self, attrs: Attrs, plan: Plan, bridge: str | None) -> str | None:
        for key, mapping in plan.operations:
            value = text(attrs.get(key))
            if value is not None and value.lower() in mapping:
                return mapping[value.lower()]
        if bridge is not None:
            return A.AGENTS_SPAN_TYPES.get(bridge)
        model = self._adk_llm_model(attrs) if self.on[A.GOOGLE_ADK] else None
        if model is not None:  # ADK's call_llm: Gemini's operation is generate_content
            return "generate_content" if model.startswith("gemini") else "chat"
        return None

    def _calls_model(self, new: Writes) -> bool:
        """Whether the span is a model call, the only kind that gets a provider: an inference
        operation, or no operation but a model named."""
        operation = new.text(A.OPERATION)
        if operation is not None:
            return operation in A.MODEL_OPERATIONS
        return self._model(new) is not None

    def _provider(self, attrs: Attrs, plan: Plan, span_name: str) -> str | None:
        for key in plan.providers:
            value = text(attrs.get(key))
            if value is None or value == A.ADK_SYSTEM:
                continue
            if key == "llm.provider" and value.lower() == "azure":
                system = text(attrs.get("llm.system")) or ""
                return "azure.ai.openai" if system.lower() == "openai" else "azure.ai.inference"
            return normalise_provider(value)
        if self.on[A.LANGFUSE] and span_name.startswith(A.LANGFUSE_OPENAI_PREFIX) and (
                text(attrs.get("langfuse.observation.type")) or "").lower() in ("generation", "embedding"):
            return "openai"
        model = self._adk_llm_model(attrs) if self.on[A.GOOGLE_ADK] else None
        return "gcp.gen_ai" if model and model.startswith("gemini") else None

    @staticmethod
    def _adk_llm_model(attrs: Attrs) -> str | None:
        """Google ADK's call_llm span: gen_ai.system is ADK itself, the model is the request model."""
        if attrs.get("gen_ai.system") != A.ADK_SYSTEM:
            return None
        return (text(attrs.get(A.REQUEST_MODEL)) or "").lower() or None

    def _roles(self, attrs: Attrs, span_name: str, bridge: str | None, new: Writes) -> None:
        """Agent and tool names that families carry under a generic name, by span role."""
        if self.on[A.OPENLLMETRY]:
            kind = (text(attrs.get("traceloop.span.kind")) or "").lower()
            if kind in ("agent", "tool"):
                new.add(ROLE_KEY[kind], text(attrs.get(A.TRACELOOP_ENTITY)))
        if self.on[A.AGENTOPS]:
            kind = (text(attrs.get(A.AGENTOPS_KIND)) or "").lower()
            if kind in ("agent", "tool"):
                new.add(ROLE_KEY[kind], text(attrs.get(A.AGENTOPS_NAME)))
        if self.on[A.LANGFUSE]:
            kind = (text(attrs.get("langfuse.observation.type")) or "").lower()
            if kind in ("agent", "tool"):  # Langfuse names the observation by the span name
                new.add(ROLE_KEY[kind], span_name or None)
        if self.on[A.OPENINFERENCE]:
            kind = (text(attrs.get("openinference.span.kind")) or "").upper()
            if kind == "TOOL":
                new.add(A.TOOL_CALL_ID, text(attrs.get(A.OPENINFERENCE_TOOL_ID)))
                new.add(A.TOOL_NAME, span_name or None)  # tool.name first (string aliases)
            elif kind == "AGENT":  # @tracer.agent(name=...) names the span only
                new.add(A.AGENT_NAME, span_name or None)
        if bridge in ("agent", "function"):
            new.add(ROLE_KEY[bridge], text(attrs.get(A.BRIDGE_NAME)))

    def _agents_type(self, attrs: Attrs, span_name: str, scope_name: str) -> str | None:
        """The OpenAI Agents SDK span type of a bridge span (Logfire, OTel bridges), or None."""
        if not self.on[A.OPENAI_AGENTS]:
            return None
        template = text(attrs.get(A.LOGFIRE_TEMPLATE))
        if template is None and scope_name not in A.AGENTS_SCOPES:
            return None
        if template is None and span_name in A.AGENTS_SPAN_TYPES:
            return span_name
        name = template or span_name
        for prefix, kind in A.AGENTS_NAME_PREFIXES:
            if name.startswith(prefix):
                return kind
        return None

    # -- tokens and cost --------------------------------------------------------------------------
    def _tokens(self, attrs: Attrs, plan: Plan, scope_name: str, new: Writes) -> T.Usage:
        """Fill the missing canonical counts from the plan's token family; return the span's
        resulting usage (existing canonical counts win)."""
        have = T.canonical_usage(attrs) if plan.canonical_tokens else T.NOTHING
        family = plan.token_family
        if family is None:
            return have
        if family == A.OTEL_LEGACY:
            source = T.inclusive_usage(attrs, A.OTEL_LEGACY_TOKENS, self.total_key)
        elif family == A.OPENINFERENCE:
            source = T.inclusive_usage(attrs, A.OPENINFERENCE_TOKENS)
        else:
            source = T.langfuse_usage(attrs[A.LANGFUSE_USAGE])
        if have is not T.NOTHING:
            source = T.with_cache_from(source, have)
        if have.input is None and source.input is not None and (T.cache_exceeds_input(source) or (
                family == A.OTEL_LEGACY and self._raw_anthropic(attrs, scope_name, new))):
            source = T.fold_cache_into_input(source)
        for (key, _), value in zip(T.CANONICAL_FIELDS, source):
            if value is not None:
                new.add(key, value)
        if have is T.NOTHING:
            return source
        return T.Usage(*(mine if mine is not None else theirs for mine, theirs in zip(have, source)))

    def _raw_anthropic(self, attrs: Attrs, scope_name: str, new: Writes) -> bool:
        """AgentOps records Anthropic's raw `input_tokens` (cache excluded) as prompt_tokens."""
        from_agentops = "agentops.span.kind" in attrs or scope_name.startswith("agentops")
        return self.on[A.AGENTOPS] and from_agentops and new.text(A.PROVIDER) == "anthropic"

    @staticmethod
    def _model(new: Writes) -> str | None:
        """The model to price: the response model (exact version) before the requested one."""
        return new.text(A.RESPONSE_MODEL) or new.text(A.REQUEST_MODEL)

    def _cost(self, attrs: Attrs, plan: Plan, usage: T.Usage, new: Writes) -> float | None:
        """The cost a family put on the span if any, else tokens × the model's cached rates."""
        if plan.costs:
            cost = T.span_cost(attrs, self.on[A.OPENINFERENCE], self.on[A.LANGFUSE])
            if cost is not None:
                return cost
        if self.book is None or not (usage.input or usage.output):
            return None
        model = self._model(new)
        rates = self.book.rates(new.text(A.PROVIDER), model)
        if rates is None:
            self.on_unpriced(model or "")
            return None
        return rates.cost(usage)

    # -- errors and sessions ----------------------------------------------------------------------
    def _error_type(self, attrs: Attrs, span: SpanFacts) -> str | None:
        failed = span.status_code == STATUS_ERROR
        if not failed and self.on[A.LANGFUSE] and A.LANGFUSE_LEVEL in attrs:
            failed = (text(attrs.get(A.LANGFUSE_LEVEL)) or "").upper() == "ERROR"
        if not failed:
            return None
        found = text(attrs.get("exception.type")) or span.exception_type
        return found or "_OTHER"  # the semantic conventions' value when the type is unknown

    @staticmethod
    def _session(attrs: Attrs, plan: Plan) -> tuple[int, str] | None:
        for priority, key in plan.sessions:
            value = text(attrs[key])
            if value is not None:
                return priority, value
        return None
