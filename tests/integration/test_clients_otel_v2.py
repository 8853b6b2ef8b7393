"""opentelemetry-instrumentation-openai-v2 (the OpenTelemetry project's OpenAI instrumentation),
default and latest-experimental semantic conventions, against the fake OpenAI server
(testkit/fake_openai.py) and the real daemon: every stored span must carry the values
the server produced (tests/clients/kit.py has the checks).

What this version (2.4b0, with opentelemetry-util-genai 1.1b0) reports, found here: no cached
token count (so the cost is the uncached one), and no span for the Responses API. The agent
and tool spans are the application's, as the instrumentation leaves them to it.
"""
from __future__ import annotations

import pytest

from tests.clients.kit import ClientStack, Reports, describe, llm_problems, role_problems, session_problems


@pytest.mark.parametrize("semconv", ["default", "gen_ai_latest_experimental"])
def test_openai_v2_spans_carry_what_the_server_answered(client_stack: ClientStack, semconv: str) -> None:
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": semconv} if semconv != "default" else {}
    traced = frozenset({"chat", "embeddings"})
    run = client_stack.run("otel_v2", "otel_v2_agent", env=env, traced=traced, expect=5)
    assert [c.endpoint for c in run.calls] == ["chat", "chat", "responses", "embeddings"]
    assert [c.stream for c in run.calls] == [False, True, False, False]
    problems = llm_problems(run, endpoints=traced, reports=Reports(cache=False))
    problems += role_problems(run) + session_problems(run)
    assert not problems, "\n".join(problems) + "\n" + describe(run)
