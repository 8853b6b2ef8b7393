"""TEST CODE: pydantic-ai runs the weather agent (agent_common) on OpenAI chat completions,
instrumented by logfire's `instrument_pydantic_ai`; OTLP to the daemon as in logfire_agent.py.
The session is the conversation id pydantic-ai's run takes (`conversation_id=`)."""
from __future__ import annotations

import os

import agent_common as C

os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = C.TRACES_URL

import logfire  # noqa: E402
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402


def main() -> None:
    logfire.configure(send_to_logfire=False, service_name=C.SERVICE_NAME, console=False)
    logfire.instrument_pydantic_ai()
    model = OpenAIChatModel(C.MODEL, provider=OpenAIProvider(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY))
    agent = Agent(model, name=C.AGENT_NAME, instructions=C.INSTRUCTIONS)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return C.get_weather(city)

    agent.run_sync(C.QUESTION, conversation_id=C.SESSION_ID)
    logfire.force_flush()
    logfire.shutdown()


if __name__ == "__main__":
    main()
