"""The alias tables: which attribute of which instrumentation family means which canonical key.

Pure data, no logic beyond small lookups. Every source key here is a published attribute
name (docs/genai-attributes.md#aliases-family-by-family, and each project's
semantic-convention file). A row belongs to one or more *sources*; `enabled_sources` in the
config switches whole families off. The canonical OpenTelemetry GenAI keys themselves are
always read: they are the target.
"""
from __future__ import annotations

# --- canonical keys (OpenTelemetry GenAI semantic conventions, plus our cost extension) -----
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
REASONING = "gen_ai.usage.reasoning.output_tokens"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
CONVERSATION = "gen_ai.conversation.id"
ERROR_TYPE = "error.type"
COST = "gen_ai.usage.cost"  # our documented extension: USD, not an OpenTelemetry key

# --- source families --------------------------------------------------------------------------
OTEL_LEGACY = "otel_legacy"
OPENINFERENCE = "openinference"
OPENLLMETRY = "openllmetry"
LANGFUSE = "langfuse"
AGENTOPS = "agentops"
OPENAI_AGENTS = "openai_agents"
GOOGLE_ADK = "google_adk"
SOURCES: tuple[str, ...] = (OTEL_LEGACY, OPENINFERENCE, OPENLLMETRY, LANGFUSE, AGENTOPS, OPENAI_AGENTS, GOOGLE_ADK)

# --- plain string aliases: (canonical, source key, owning sources), first match wins -----------
# OpenInference's `llm.model_name` is the model the response names (a dated snapshot); the one
# requested is the `model` of `llm.invocation_parameters` (JSON, read by the normaliser first), so
# `llm.model_name` is the request model only when the span has no invocation parameters
# (the same for embeddings: `embedding.model_name`, `embedding.invocation_parameters`).
# Langfuse's `model.name` is the response's model too (langfuse.openai records the answer's).
STRING_ALIASES: tuple[tuple[str, str, frozenset[str]], ...] = (
    (REQUEST_MODEL, "llm.request.model_name", frozenset({OPENINFERENCE})),
    (REQUEST_MODEL, "llm.model_name", frozenset({OPENINFERENCE})),
    (REQUEST_MODEL, "embedding.model_name", frozenset({OPENINFERENCE})),
    (RESPONSE_MODEL, "langfuse.observation.model.name", frozenset({LANGFUSE})),
    (RESPONSE_MODEL, "llm.response.model_name", frozenset({OPENINFERENCE})),
    (RESPONSE_MODEL, "llm.model_name", frozenset({OPENINFERENCE})),
    (RESPONSE_MODEL, "embedding.model_name", frozenset({OPENINFERENCE})),
    (AGENT_NAME, "agent.name", frozenset({OPENINFERENCE, AGENTOPS, OPENAI_AGENTS})),
    (AGENT_ID, "agent.id", frozenset({AGENTOPS})),
    (TOOL_NAME, "tool.name", frozenset({OPENINFERENCE, AGENTOPS})),
    (TOOL_CALL_ID, "tool_call.id", frozenset({OPENINFERENCE})),
    (TOOL_CALL_ID, "tool.call.id", frozenset({AGENTOPS})),  # its OpenAI wrapper's span per requested call
)

# --- operation name: (source key, owning sources, value map) ---------------------------------
OPERATION_ALIASES: tuple[tuple[str, frozenset[str], dict[str, str]], ...] = (
    ("openinference.span.kind", frozenset({OPENINFERENCE}),
     {"llm": "chat", "tool": "execute_tool", "agent": "invoke_agent", "embedding": "embeddings"}),
    ("llm.request.type", frozenset({OPENLLMETRY}),
     {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}),
    ("traceloop.span.kind", frozenset({OPENLLMETRY}),
     {"agent": "invoke_agent", "tool": "execute_tool", "workflow": "invoke_workflow"}),
    ("langfuse.observation.type", frozenset({LANGFUSE}),
     {"generation": "chat", "agent": "invoke_agent", "tool": "execute_tool", "embedding": "embeddings"}),
    ("agentops.span.kind", frozenset({AGENTOPS}),
     {"llm": "chat", "llm.call": "chat", "agent": "invoke_agent", "tool": "execute_tool",
      "workflow": "invoke_workflow"}),
    ("gen_ai.request.type", frozenset({AGENTOPS}),  # AgentOps' name for OpenLLMetry's llm.request.type
     {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}),
)

# OpenAI Agents SDK span types (as bridges name their spans) → operation. Handoff and
# guardrail have no GenAI operation, so they are recognised but get none.
AGENTS_SPAN_TYPES: dict[str, str | None] = {
    "agent": "invoke_agent", "generation": "chat", "response": "chat", "function": "execute_tool",
    "handoff": None, "guardrail": None,
}
# Span-name (or Logfire message-template) prefixes → SDK span type, most specific first.
AGENTS_NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Agent run:", "agent"), ("Function:", "function"), ("Handoff:", "handoff"), ("Guardrail", "guardrail"),
    ("Responses API", "response"), ("Chat completion", "generation"),
    ("agent:", "agent"), ("execute_tool ", "function"), ("handoff:", "handoff"), ("guardrail:", "guardrail"),
    ("gen_ai.response", "response"), ("chat ", "generation"),
)
AGENTS_SCOPES = frozenset({"openai.agents", "openai-agents", "openai_agents"})

# --- provider -----------------------------------------------------------------------------------
# Source keys naming the provider, in order (gen_ai.system is the old OTel name; OpenLLMetry and
# AgentOps send it too). `llm.provider` is the host (azure), `llm.system` the product (openai).
PROVIDER_ALIASES: tuple[tuple[str, frozenset[str]], ...] = (
    ("gen_ai.system", frozenset({OTEL_LEGACY, OPENLLMETRY, AGENTOPS, OPENAI_AGENTS})),
    ("llm.provider", frozenset({OPENINFERENCE})),
    ("llm.system", frozenset({OPENINFERENCE})),
)
# A provider is written only on spans that call a model: these operations, or no operation but a
# model named. Logfire puts gen_ai.system on its agent, tool, turn and task spans too; a provider
# there would count a tool's failures against the model provider (dependency detector).
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "embeddings", "generate_content"})
# langfuse.openai names its observations "OpenAI-generation" / "OpenAI-embedding" and writes no
# provider: that name prefix on a generation or embedding observation means OpenAI.
LANGFUSE_OPENAI_PREFIX = "OpenAI-"
ADK_SYSTEM = "gcp.vertex.agent"  # Google ADK puts its own name in gen_ai.system: a framework, not a provider
# Provider values seen in the wild → gen_ai.provider.name: pipeline/catalogue/providers.py (the
# price catalogue keys its override file by the same names).

# --- tokens ------------------------------------------------------------------------------------
# (input, output, cache read, cache creation, reasoning, total) per inclusive source family.
OTEL_LEGACY_TOKENS = ("gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens",
                      "gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_creation_input_tokens",
                      "gen_ai.usage.reasoning_tokens", "gen_ai.usage.total_tokens")
OPENINFERENCE_TOKENS = ("llm.token_count.prompt", "llm.token_count.completion",
                        "llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_write",
                        "llm.token_count.completion_details.reasoning", "llm.token_count.total")
OPENLLMETRY_TOTAL = "llm.usage.total_tokens"
LANGFUSE_USAGE = "langfuse.observation.usage_details"
# OpenInference's request parameters (JSON): their `model` is the requested model.
OPENINFERENCE_INVOCATION = ("llm.invocation_parameters", "embedding.invocation_parameters")
LANGFUSE_COST = "langfuse.observation.cost_details"
OPENINFERENCE_COST = "llm.cost.total"

# --- sessions: per trace, the first non-empty of these keys wins (docs/genai-attributes.md#session-id)
SESSION_KEYS: tuple[tuple[str, frozenset[str]], ...] = (
    (CONVERSATION, frozenset(SOURCES)),
    ("session.id", frozenset({OPENINFERENCE, LANGFUSE})),
    ("langfuse.session.id", frozenset({LANGFUSE})),
    ("traceloop.association.properties.session_id", frozenset({OPENLLMETRY})),
    ("trace.group_id", frozenset({OPENAI_AGENTS})),
    ("group_id", frozenset({OPENAI_AGENTS})),
    ("group.id", frozenset({OPENAI_AGENTS})),
    ("agent.group_id", frozenset({OPENAI_AGENTS})),
    ("gcp.vertex.agent.session_id", frozenset({GOOGLE_ADK})),
)

# --- keys read only to decide a span's role ---------------------------------------------------
TRACELOOP_ENTITY = "traceloop.entity.name"
LANGFUSE_LEVEL = "langfuse.observation.level"
LOGFIRE_TEMPLATE = "logfire.msg_template"
BRIDGE_NAME = "name"  # Logfire's Agents-SDK spans carry the agent/function name as `name`
OPENINFERENCE_TOOL_ID = "tool.id"  # on an OpenInference TOOL span: the id of the call it answers
ADK_INVOCATION = "gcp.vertex.agent.invocation_id"
AGENTOPS_KIND = "agentops.span.kind"
AGENTOPS_NAME = "operation.name"  # AgentOps' @agent(name=...) / @tool(name=...) name, beside its span kind

CANONICAL: tuple[str, ...] = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL, INPUT_TOKENS, OUTPUT_TOKENS,
                              CACHE_READ, CACHE_CREATION, REASONING, AGENT_NAME, AGENT_ID, TOOL_NAME,
                              TOOL_CALL_ID, CONVERSATION, COST)


def known_keys() -> frozenset[str]:
    """Every attribute key the processor reads: a span holding none of them is skipped at once."""
    keys: set[str] = set(CANONICAL)
    keys.update(row[1] for row in STRING_ALIASES)
    keys.update(row[0] for row in OPERATION_ALIASES)
    keys.update(row[0] for row in PROVIDER_ALIASES)
    keys.update(OTEL_LEGACY_TOKENS, OPENINFERENCE_TOKENS, (key for key, _ in SESSION_KEYS))
    keys.update(OPENINFERENCE_INVOCATION)
    keys.update((OPENLLMETRY_TOTAL, LANGFUSE_USAGE, LANGFUSE_COST, OPENINFERENCE_COST, TRACELOOP_ENTITY,
                 LANGFUSE_LEVEL, OPENINFERENCE_TOOL_ID, ADK_INVOCATION))
    return frozenset(keys)


KNOWN_KEYS = known_keys()
# Gates: a span without any of these skips that part of the work.
CANONICAL_TOKENS = frozenset((INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ, CACHE_CREATION, REASONING))
ROLE_KEYS = frozenset(("traceloop.span.kind", "langfuse.observation.type", "openinference.span.kind", AGENTOPS_KIND))
COST_KEYS = frozenset((COST, OPENINFERENCE_COST, LANGFUSE_COST))
# Also picked out of every span, but too generic to mark one as GenAI on their own: Logfire
# puts a message template on every span, `name` is anyone's, exceptions happen everywhere, and
# `error.type` is read so that a value the span already carries wins over the one we would add.
CONTEXT_KEYS = frozenset({LOGFIRE_TEMPLATE, BRIDGE_NAME, AGENTOPS_NAME, "exception.type", ERROR_TYPE})
WANTED_KEYS = KNOWN_KEYS | CONTEXT_KEYS
