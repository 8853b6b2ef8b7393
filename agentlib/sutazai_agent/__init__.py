"""sutazai_agent: the agent side of the SutazAI agent debugger.

    from sutazai_agent import configure, session, circuit_breaker, throttle

    configure(service_name="planner", agent_name="planner")      # OTLP to the daemon, decisions feed
    breaker = circuit_breaker("ollama_model", fallback_model="tinyllama", dependency="ollama")

    @breaker
    def ask(prompt: str, model: str = "llama3.1:8b") -> str: ...

    with session("conversation-42"):
        ask("hello")

`configure` / `instrument_agent` / `tool` / `session`: telemetry.py and decorators.py;
`circuit_breaker`: guard.py (state machine in breaker.py); `throttle`: throttle.py (bucket.py);
the daemon's decisions: feed.py.
"""
from sutazai_agent.breaker import DEFAULT_CHAIN, fallback_tiers
from sutazai_agent.decorators import instrument_agent, tool
from sutazai_agent.feed import DecisionFeed
from sutazai_agent.guard import Call, CircuitBreaker, circuit_breaker, current_call
from sutazai_agent.telemetry import Agent, configure, current, session
from sutazai_agent.throttle import Throttle, Throttled, throttle

__all__ = ["DEFAULT_CHAIN", "Agent", "Call", "CircuitBreaker", "DecisionFeed", "Throttle", "Throttled",
           "circuit_breaker", "configure", "current", "current_call", "fallback_tiers", "instrument_agent",
           "session", "throttle", "tool"]
