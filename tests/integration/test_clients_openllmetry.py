"""OpenLLMetry (traceloop-sdk 0.62.4 and its opentelemetry-instrumentation-openai, with the SDK's
@workflow, @agent and @tool decorators and a session association property) against the fake
OpenAI server (testkit/fake_openai.py) and the real daemon: every stored span must carry the
values the server produced (tests/clients/kit.py has the checks).

The family installs only with `pip install --no-deps` from a fully pinned file
(tests/clients/requirements-openllmetry.txt says why).

What this version reports, found here: every canonical key the checks ask for, cached tokens
included (the SDK writes the current GenAI names itself); the normalisation needed no change.
What the family does not report: the tool call id on the `@tool` span (the decorated function
never sees it; it is only in the chat span's output messages).
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, describe, llm_problems, role_problems, session_problems


def test_openllmetry_spans_carry_what_the_server_answered(client_stack: ClientStack) -> None:
    run = client_stack.run("openllmetry", "openllmetry_agent", expect=6)
    assert [(c.endpoint, c.stream) for c in run.calls] == [("chat", False), ("chat", True), ("embeddings", False)]
    problems = llm_problems(run) + role_problems(run, tool_call_id=False) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)
