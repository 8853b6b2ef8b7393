"""TEST CODE: opentelemetry-instrumentation-openai-v2 drives the weather agent (agent_common).

The instrumentation covers the OpenAI client calls only; the agent and tool spans are the
application's own, written with the GenAI conventions as its documentation shows. Run with
OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental for the newer attribute set.
Calls: chat with a tool (non-streaming), chat after the tool result (streaming, usage on),
responses (non-streaming), embeddings.
"""
from __future__ import annotations

import json

import agent_common as C
import openai
from opentelemetry import trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from otel_setup import sdk_provider


def main() -> None:
    provider = sdk_provider()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = trace.get_tracer("weather.app")
    client = openai.OpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY)
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": C.AGENT_NAME,
             "gen_ai.conversation.id": C.SESSION_ID}
    with tracer.start_as_current_span(f"invoke_agent {C.AGENT_NAME}", attributes=agent):
        messages = C.chat_messages()
        first = client.chat.completions.create(model=C.MODEL, messages=messages, tools=[C.CHAT_TOOL])
        call = first.choices[0].message.tool_calls[0]
        with tracer.start_as_current_span(f"execute_tool {C.TOOL_NAME}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.function.name,
                "gen_ai.tool.call.id": call.id}):
            C.get_weather(**json.loads(call.function.arguments))
        C.drain(client.chat.completions.create(model=C.MODEL, messages=C.with_tool_result(messages, call),
                                               stream=True, stream_options={"include_usage": True}))
        client.responses.create(model=C.MODEL, input=C.QUESTION)
        client.embeddings.create(model=C.EMBEDDING_MODEL, input=["Lisbon"])
    provider.shutdown()


if __name__ == "__main__":
    main()
