"""Google ADK through LiteLLM (`openai/gpt-4o-mini` on the fake OpenAI server,
testkit/fake_openai.py) and the real daemon. Every stored span must carry the values the
server produced (tests/clients/kit.py has the checks).

What the family itself reports differently: the operation is generate_content, the request
model is LiteLLM's provider-prefixed name, and no response model is recorded (so the cost is
the requested model's price).
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, Reports, describe, llm_problems, role_problems, session_problems


def test_adk_litellm_spans_carry_what_the_server_answered(client_stack: ClientStack) -> None:
    run = client_stack.run("adk", "adk_agent", expect=5)
    assert [(c.endpoint, c.tool_name) for c in run.calls] == [("chat", "get_weather"), ("chat", None)]
    reports = Reports(request_model="openai/{request}", response_model=False, operation="generate_content")
    problems = llm_problems(run, reports=reports) + role_problems(run) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)
