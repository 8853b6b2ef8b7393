"""`genai`: normalise every span to the OpenTelemetry GenAI semantic conventions.

Agents arrive instrumented by many families — OpenTelemetry GenAI (current and old
names), OpenInference (Phoenix), OpenLLMetry (Traceloop), Langfuse, AgentOps, OpenAI
Agents SDK bridges, Google ADK. This processor adds the canonical `gen_ai.*` keys the
rest of the pipeline reads: operation, provider, request/response model, input/output
tokens (inclusive: cache ⊂ input, reasoning ⊂ output, whatever the family's arithmetic),
cache read/creation and reasoning tokens, agent name/id, tool name/call id,
`gen_ai.conversation.id` (one per trace), `error.type`, and `gen_ai.usage.cost` — USD, our
own documented extension, not an OpenTelemetry key.

What it promises:
- It never drops, refuses or delays data, and never removes or changes an attribute: it
  only ADDS canonical keys a span lacks. A canonical value already on a span wins.
- A cost already on the span (`gen_ai.usage.cost`, OpenInference `llm.cost.total`,
  Langfuse `cost_details`) wins over ours. Otherwise cost = tokens × the model's rates from
  `genai-prices` (bundled, offline) or the `prices_file` overrides, priced once per
  (provider, model). On an unknown model the cost is left unset and the span is counted in
  `agentdbg_genai_unpriced_spans_total{model}`.
- Spans with no GenAI attribute are left alone, and so are traces without a GenAI span.
  A batch it wrote nothing to keeps its original wire bytes.

Modules: `aliases` (the source → canonical tables), `values` (attribute reading/writing),
`tokens` (per-family token arithmetic), `session` (session id per trace), `normalise` (one
span), `config` (the YAML block), `processor` (the batch walk); the factory is here. Prices and
context windows come from the model catalogue, pipeline/catalogue/ (shared with the
context_overflow detector).
"""
from pipeline.component import Factory, Kind, Signal
from processors.genai.config import GenAIConfig
from processors.genai.processor import GenAIProcessor

factory = Factory("genai", Kind.PROCESSOR, GenAIConfig, GenAIProcessor, signals=frozenset({Signal.TRACES}),
                  description="normalise spans to the OpenTelemetry GenAI conventions, with cost and session")

__all__ = ["GenAIConfig", "GenAIProcessor", "factory"]
