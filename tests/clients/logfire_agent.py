"""TEST CODE: logfire's `instrument_openai_agents` traces the OpenAI Agents SDK (openai-agents)
running the weather agent (agent_common) on the Responses API, streamed. logfire sends to no
Logfire project (send_to_logfire=False); its OTLP exporter goes to the daemon through the
standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. The session is the SDK trace's group_id."""
from __future__ import annotations

import asyncio
import os

import agent_common as C

os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = C.TRACES_URL

import agents  # noqa: E402
import logfire  # noqa: E402
import openai  # noqa: E402
from agents import Agent, Runner, function_tool  # noqa: E402


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return C.get_weather(city)


async def run() -> None:
    agent = Agent(name=C.AGENT_NAME, instructions=C.INSTRUCTIONS, model=C.MODEL, tools=[get_weather])
    with agents.trace("weather workflow", group_id=C.SESSION_ID):
        result = Runner.run_streamed(agent, C.QUESTION)
        async for _ in result.stream_events():
            pass


def main() -> None:
    logfire.configure(send_to_logfire=False, service_name=C.SERVICE_NAME, console=False)
    agents.set_trace_processors([])  # no upload to OpenAI's trace store: logfire's processor only
    logfire.instrument_openai_agents()
    agents.set_default_openai_client(openai.AsyncOpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY))
    asyncio.run(run())
    logfire.force_flush()
    logfire.shutdown()


if __name__ == "__main__":
    main()
