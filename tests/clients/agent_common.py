"""TEST CODE: what every client script of tests/clients/ shares (standard library only: each
script runs with its family's own virtualenv, where the project's packages are not installed).

A script reads where to go from its environment (set by tests/clients/kit.py):
FAKE_OPENAI_URL (the OpenAI base URL, .../v1), OTLP_ENDPOINT (the daemon's OTLP/HTTP base URL),
SERVICE_NAME and SESSION_ID. It plays one weather agent: the model asks for the `get_weather`
tool, the tool answers, the model answers in text; then an embedding call.
"""
from __future__ import annotations

import json
import os

FAKE_OPENAI_URL = os.environ.get("FAKE_OPENAI_URL", "http://127.0.0.1:1/v1")
OTLP_ENDPOINT = os.environ.get("OTLP_ENDPOINT", "http://127.0.0.1:4318")
TRACES_URL = OTLP_ENDPOINT + "/v1/traces"
SERVICE_NAME = os.environ.get("SERVICE_NAME", "client-family")
SESSION_ID = os.environ.get("SESSION_ID", "sess-client")
API_KEY = "sk-fake-0123456789abcdef0123456789abcdef"  # the fake server takes any key

AGENT_NAME = "weather_agent"
TOOL_NAME = "get_weather"
MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
QUESTION = "What is the weather in Lisbon?"
INSTRUCTIONS = "You answer questions about the weather. Use the get_weather tool."

CHAT_TOOL = {"type": "function", "function": {
    "name": TOOL_NAME, "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return json.dumps({"city": city, "sky": "sunny", "celsius": 24})


def chat_messages() -> list[dict]:
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": QUESTION}]


def with_tool_result(messages: list[dict], call: object) -> list[dict]:
    """The conversation after the assistant's tool call (an openai ChatCompletionMessageToolCall)."""
    arguments = json.loads(call.function.arguments)  # type: ignore[attr-defined]
    return [*messages,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",  # type: ignore[attr-defined]
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}]},  # type: ignore[attr-defined]
            {"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)}]  # type: ignore[attr-defined]


def drain(stream: object) -> None:
    """Read a streamed answer to its end (the instrumentation ends its span there)."""
    for _ in stream:  # type: ignore[attr-defined]
        pass
