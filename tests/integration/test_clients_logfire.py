"""logfire against the fake OpenAI server (testkit/fake_openai.py) and the real daemon:
`instrument_openai_agents` with the OpenAI Agents SDK (Responses API, streamed), and
`instrument_pydantic_ai` with pydantic-ai (chat completions). Every stored span must carry the
values the server produced (tests/clients/kit.py has the checks).

Found here and fixed: logfire sets gen_ai.system on its agent, tool, turn and task spans too,
which then got gen_ai.provider.name, so the dependency detector counted a tool's failures
against the model provider; a provider is now written on model calls only.
What the family itself does not report: the Agents bridge's tool span has no call id.
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, describe, llm_problems, role_problems, session_problems


def test_logfire_openai_agents(client_stack: ClientStack) -> None:
    run = client_stack.run("logfire", "logfire_agent", expect=8)
    assert [(c.endpoint, c.stream, c.tool_name) for c in run.calls] == [
        ("responses", True, "get_weather"), ("responses", True, None)]
    problems = llm_problems(run) + role_problems(run, tool_call_id=False) + session_problems(run)
    no_model = [s.name for s in run.spans if s.get("gen_ai.provider.name") and not s.get("gen_ai.response.model")]
    assert not no_model, f"a provider on spans that call no model: {no_model}"
    assert not problems, "\n".join(problems) + "\n" + describe(run)


def test_logfire_pydantic_ai(client_stack: ClientStack) -> None:
    run = client_stack.run("logfire", "logfire_pydantic_agent", expect=4)
    assert [(c.endpoint, c.tool_name) for c in run.calls] == [("chat", "get_weather"), ("chat", None)]
    problems = llm_problems(run) + role_problems(run) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)
