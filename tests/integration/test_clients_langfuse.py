"""The Langfuse SDK (v3+, OpenTelemetry-based) with its OpenAI drop-in `langfuse.openai`, against
the fake OpenAI server (testkit/fake_openai.py) and the real daemon as its host. Every stored
span must carry the values the server produced (tests/clients/kit.py has the checks).

Found here and fixed: the SDK posts to /api/public/otel/v1/traces (404 before the otlp
receiver took that path too); `usage_details` holds OpenAI's raw usage object, whose nested
prompt_tokens_details.cached_tokens was lost (cost too high on cached calls; prompt_tokens
already includes the cached tokens, so they must not be added again); `model.name` is the
response's model, stored as the request model; no provider was written.
What the family itself does not report: the requested model, and the tool call's id.
"""
from __future__ import annotations

from tests.clients.kit import ClientStack, Reports, describe, llm_problems, role_problems, session_problems


def test_langfuse_openai_spans_carry_what_the_server_answered(client_stack: ClientStack) -> None:
    run = client_stack.run("langfuse", "langfuse_agent", expect=5)
    assert [(c.endpoint, c.stream) for c in run.calls] == [("chat", False), ("chat", True), ("embeddings", False)]
    assert all(s.scope == "langfuse-sdk" for s in run.spans)  # arrived on Langfuse's own path
    problems = llm_problems(run, reports=Reports(request_model=None))
    problems += role_problems(run, tool_call_id=False) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)
