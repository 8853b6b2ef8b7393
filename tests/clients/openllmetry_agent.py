"""TEST CODE: OpenLLMetry (traceloop-sdk with its opentelemetry-instrumentation-openai) drives
the weather agent (agent_common).

`Traceloop.init` points the SDK's OTLP/HTTP exporter at the daemon; the session is a Traceloop
association property. The agent, its task and its tool are the SDK's decorators (`@workflow`,
`@agent`, `@tool`). One batching processor exporting at the end, as tests/clients/otel_setup.py
explains. Calls: chat with a tool (non-streaming), chat after the tool result (streaming,
usage on), embeddings.
"""
from __future__ import annotations

import json

import agent_common as C
import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import agent, tool, workflow

PROCESSOR = BatchSpanProcessor(OTLPSpanExporter(endpoint=C.TRACES_URL), schedule_delay_millis=60_000)


@tool(name=C.TOOL_NAME)
def get_weather(city: str) -> str:
    return C.get_weather(city)


@agent(name=C.AGENT_NAME)
def weather_agent(client: openai.OpenAI) -> None:
    messages = C.chat_messages()
    first = client.chat.completions.create(model=C.MODEL, messages=messages, tools=[C.CHAT_TOOL])
    call = first.choices[0].message.tool_calls[0]
    get_weather(**json.loads(call.function.arguments))
    C.drain(client.chat.completions.create(model=C.MODEL, messages=C.with_tool_result(messages, call),
                                           stream=True, stream_options={"include_usage": True}))
    client.embeddings.create(model=C.EMBEDDING_MODEL, input=["Lisbon"])


@workflow(name="weather_workflow")
def run(client: openai.OpenAI) -> None:
    weather_agent(client)


def main() -> None:
    Traceloop.init(app_name=C.SERVICE_NAME, processor=PROCESSOR, telemetry_enabled=False,
                   disable_batch=False, resource_attributes={"service.name": C.SERVICE_NAME})
    Traceloop.set_association_properties({"session_id": C.SESSION_ID})
    run(openai.OpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY))
    PROCESSOR.shutdown()


if __name__ == "__main__":
    main()
