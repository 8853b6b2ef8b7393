"""Who is in a scenario's fleet: one `ServiceProfile` per agent service, and the two fleets.

A profile says how a service behaves when healthy: how often it is invoked, which model it
calls and how long that takes, which tools it uses and what they call, how often things
fail on their own, and what its process reports as memory and CPU. The numbers are picked
to look like a small production agent fleet, and so that the healthy spend of the paid
services stays at about 60-75 % of the product's default $10/day budget, hour by hour (a
fleet that overspends is not healthy under the default config, whatever its latencies):
about $0.25-0.30 an hour each, against the burn-rate line of $10 / 24 = $0.42 an hour.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Tool:
    name: str
    dependency: str | None  # peer.service of the HTTP call it makes; None: local work
    median_s: float  # typical duration of that call or work
    sigma: float = 0.6  # lognormal spread
    arg_space: int = 100_000  # distinct argument values: small means the same call recurs naturally


@dataclass(frozen=True)
class Burst:
    """A traffic burst: `factor` × the usual invocation rate from `start` for `duration` seconds."""

    start: float
    duration: float
    factor: float


@dataclass(frozen=True)
class ServiceProfile:
    service: str
    agent: str
    rate: float  # invocations per simulated second (Poisson)
    provider: str
    model: str
    chat_median_s: float
    tools: tuple[Tool, ...]
    input_tokens: int = 2000  # median; lognormal, sigma 0.6
    output_tokens: int = 300
    chats: tuple[int, int] = (1, 3)
    tools_per_chat: tuple[int, int] = (0, 2)
    workers: tuple[int, int] = (0, 0)  # nested `invoke_agent worker` spans (an orchestrator)
    version: str = "1.0.0"
    canary_version: str | None = None  # a second instance marked deployment.canary=true
    canary_share: float = 0.0
    error_rate: float = 0.01  # an invocation fails, an HTTP call answers 500
    span_error_rate: float = 0.0  # any span fails (a service with a constant error floor)
    timeout_rate: float = 0.002  # a single HTTP call times out
    timeout_s: float = 5.0  # the HTTP client's timeout
    conversation_turns: float = 1.0  # mean invocations per conversation; 1: no conversation ids
    max_repeats: int = 3  # identical tool calls an agent legitimately makes in one session
    memory_mb: float = 400.0
    memory_noise_mb: float = 1.0
    gc_sawtooth_mb: float = 0.0  # grows this much between collections, then drops back
    cpu: float = 0.3
    cpu_spike_rate: float = 0.0  # chance a reading is a short spike to 0.92-0.96
    long_context_rate: float = 0.0  # chance a chat sends 60-85 % of the model's window
    context_window: int | None = None  # the model's window, when genai-prices knows it
    bursts: tuple[Burst, ...] = ()
    expensive_model: tuple[str, str] | None = None  # what a misconfigured deploy switches to

    @property
    def root_name(self) -> str:
        return f"invoke_agent {self.agent}"


SEARCH = Tool("search_web", "api.search.example", 0.30)
FETCH = Tool("fetch_url", "web", 0.50, sigma=0.8)
READ_FILE = Tool("read_file", None, 0.01, arg_space=40)
WRITE_FILE = Tool("write_file", None, 0.02)
RUN_TESTS = Tool("run_tests", None, 3.0, sigma=0.4, arg_space=6)
RUN_SQL = Tool("run_sql", "postgres", 0.08)
GET_SCHEMA = Tool("get_schema", "postgres", 0.02, arg_space=15)
SEARCH_KB = Tool("search_kb", "vector-db", 0.04)
CREATE_TICKET = Tool("create_ticket", "helpdesk.example", 0.20)
LOOKUP_ORDER = Tool("lookup_order", "orders-api", 0.10)
CHARGE_CARD = Tool("charge_card", "payments.example", 0.35, sigma=0.4)
REFUND = Tool("refund", "payments.example", 0.30, sigma=0.4)

STANDARD: tuple[ServiceProfile, ...] = (
    ServiceProfile("support-agent", "support", 0.08, "openai", "gpt-4o-mini", 0.8, (SEARCH_KB, CREATE_TICKET),
                   input_tokens=1500, output_tokens=200, version="2.3.1", canary_version="2.4.0",
                   canary_share=0.2, conversation_turns=4, context_window=128_000,
                   expensive_model=("openai", "gpt-4o")),
    ServiceProfile("research-agent", "researcher", 0.5, "ollama", "llama3.1:8b", 1.2, (SEARCH, FETCH, READ_FILE),
                   input_tokens=3000, chats=(1, 4), version="0.9.4"),
    ServiceProfile("coder-agent", "coder", 0.3, "ollama", "qwen2.5-coder:32b", 2.0, (READ_FILE, RUN_TESTS, WRITE_FILE),
                   input_tokens=6000, output_tokens=600, conversation_turns=6, version="1.2.0", memory_mb=900,
                   cpu=0.45),
    ServiceProfile("sql-agent", "analyst", 0.4, "vllm", "meta-llama/Llama-3.1-70B-Instruct", 0.9,
                   (RUN_SQL, GET_SCHEMA), chats=(1, 3), tools_per_chat=(1, 2), version="3.0.2"),
    ServiceProfile("orchestrator", "orchestrator", 0.15, "ollama", "llama3.1:8b", 0.7, (LOOKUP_ORDER,),
                   chats=(1, 2), tools_per_chat=(1, 2), workers=(1, 3), version="1.0.7", memory_mb=250),
    ServiceProfile("billing-agent", "billing", 0.04, "anthropic", "claude-3-5-haiku-latest", 1.0,
                   (CHARGE_CARD, REFUND), input_tokens=700, output_tokens=90, chats=(1, 2),
                   tools_per_chat=(1, 1), version="5.1.0", context_window=200_000,
                   expensive_model=("anthropic", "claude-sonnet-4-20250514")),
)

SUMMARIZER = ServiceProfile(
    "summarizer", "summarizer", 0.1, "ollama", "llama3.1:70b", 12.0, (READ_FILE,), input_tokens=12000,
    output_tokens=1200, chats=(1, 3), tools_per_chat=(0, 1), version="0.3.0", memory_mb=2400, cpu=0.7)


def noisy(duration: float) -> tuple[ServiceProfile, ...]:
    """The standard fleet made harder, still healthy: traffic bursts, a slow but stable service,
    a constant ~3 % error floor, clustered legit retries, GC sawtooth, CPU spikes, long contexts
    and identical tool calls up to one below the loop threshold."""
    by_name = {p.service: p for p in STANDARD}
    return (
        replace(by_name["support-agent"], long_context_rate=0.01),
        replace(by_name["research-agent"], bursts=(Burst(duration * 0.25, 180, 4.0), Burst(duration * 0.7, 120, 3.0)),
                cpu_spike_rate=0.03),
        replace(by_name["coder-agent"], max_repeats=4, gc_sawtooth_mb=8.0, memory_noise_mb=3.0),
        replace(by_name["sql-agent"], span_error_rate=0.03),
        by_name["orchestrator"],
        replace(by_name["billing-agent"], timeout_rate=0.02),
        SUMMARIZER,
    )
