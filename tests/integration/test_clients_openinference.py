"""OpenInference against the fake OpenAI server (testkit/fake_openai.py) and the real daemon:
openinference-instrumentation-openai with OpenInference's own agent/tool decorators, and
openinference-instrumentation-openai-agents with the OpenAI Agents SDK. Every stored span must
carry the values the server produced (tests/clients/kit.py has the checks).

Found here and fixed in the genai processor: `@tracer.agent(name=...)` names the span only, so
gen_ai.agent.name was missing; and the request model was read from llm.model_name, which is the
response's snapshot, while the requested one is in llm.invocation_parameters.
What the family itself does not report: the decorators' tool span has no call id; the Agents
instrumentation puts the response object in llm.invocation_parameters (so its "requested"
model is the snapshot), records no tool call id and no session (group_id).
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, Reports, describe, llm_problems, role_problems, session_problems


def test_openai_instrumentation_with_agent_and_tool_decorators(client_stack: ClientStack) -> None:
    run = client_stack.run("openinference", "openinference_agent", expect=6)
    assert [c.endpoint for c in run.calls] == ["chat", "chat", "responses", "embeddings"]
    problems = llm_problems(run) + role_problems(run, tool_call_id=False) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)


def test_openai_agents_sdk_instrumentation(client_stack: ClientStack) -> None:
    run = client_stack.run("openinference", "openinference_agents_agent", expect=6)
    assert [(c.endpoint, c.tool_name) for c in run.calls] == [("responses", "get_weather"), ("responses", None)]
    problems = llm_problems(run, reports=Reports(request_model="{response}"))
    problems += role_problems(run, tool_call_id=False) + session_problems(run, "trace")
    assert not problems, "\n".join(problems) + "\n" + describe(run)
