"""TEST CODE: the OpenAI Agents SDK (openai-agents), traced by OpenInference's
openinference-instrumentation-openai-agents, runs the weather agent (agent_common) on the
Responses API. The SDK's own trace upload is switched off (set_trace_processors([])): only
OpenInference's processor sees its traces. The session is the SDK trace's group_id."""
from __future__ import annotations

import agent_common as C
import agents
import openai
from agents import Agent, Runner, function_tool
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from otel_setup import sdk_provider


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return C.get_weather(city)


def main() -> None:
    provider = sdk_provider()
    agents.set_trace_processors([])
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
    agents.set_default_openai_client(openai.AsyncOpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY))
    agent = Agent(name=C.AGENT_NAME, instructions=C.INSTRUCTIONS, model=C.MODEL, tools=[get_weather])
    with agents.trace("weather workflow", group_id=C.SESSION_ID):
        Runner.run_sync(agent, C.QUESTION)
    provider.shutdown()


if __name__ == "__main__":
    main()
