"""AgentOps (its OpenAI instrumentation, @agent and @tool decorators) against the fake OpenAI
server (testkit/fake_openai.py, which also answers AgentOps' key exchange) and the real daemon.
Every stored span must carry the values the server produced (tests/clients/kit.py has the checks).

Found here and fixed: AgentOps names agents and tools in operation.name beside
agentops.span.kind, and its OpenAI wrapper's tool.call.id was not mapped.
What the family itself does not report: cached tokens, and a session of its own (an AgentOps
trace is the session: the daemon's trace-id fallback names it).
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, Reports, describe, llm_problems, role_problems, session_problems


def test_agentops_spans_carry_what_the_server_answered(client_stack: ClientStack) -> None:
    # AgentOps names the service "agentops" whatever the application says; its trace is named by us
    run = client_stack.run("agentops", "agentops_agent", expect=7, fixed_service="agentops", root="{session}.session")
    assert [(c.endpoint, c.stream) for c in run.calls] == [("chat", False), ("chat", True), ("embeddings", False)]
    problems = llm_problems(run, reports=Reports(cache=False)) + role_problems(run) + session_problems(run, "trace")
    assert not problems, "\n".join(problems) + "\n" + describe(run)
