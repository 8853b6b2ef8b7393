"""TEST CODE: OpenInference's OpenAI instrumentation drives the weather agent (agent_common).

The agent and its tool are OpenInference's own decorators (`@tracer.agent(name=...)`,
`@tracer.tool(name=...)`); the session is `using_session`. Calls: chat with a tool
(non-streaming), chat after the tool result (streaming, usage on), responses, embeddings.
"""
from __future__ import annotations

import json

import agent_common as C
import openai
from openinference.instrumentation import TracerProvider, using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": C.SERVICE_NAME}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=C.TRACES_URL),
                                                   schedule_delay_millis=60_000))
trace.set_tracer_provider(provider)
tracer = provider.get_tracer("weather.app")
client = openai.OpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY)


@tracer.tool(name=C.TOOL_NAME)
def get_weather(city: str) -> str:
    return C.get_weather(city)


@tracer.agent(name=C.AGENT_NAME)
def weather_agent(question: str) -> str:
    messages = C.chat_messages()
    first = client.chat.completions.create(model=C.MODEL, messages=messages, tools=[C.CHAT_TOOL])
    call = first.choices[0].message.tool_calls[0]
    get_weather(**json.loads(call.function.arguments))
    C.drain(client.chat.completions.create(model=C.MODEL, messages=C.with_tool_result(messages, call),
                                           stream=True, stream_options={"include_usage": True}))
    client.responses.create(model=C.MODEL, input=question)
    client.embeddings.create(model=C.EMBEDDING_MODEL, input=["Lisbon"])
    return "done"


def main() -> None:
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    with using_session(C.SESSION_ID):
        weather_agent(C.QUESTION)
    provider.shutdown()


if __name__ == "__main__":
    main()
