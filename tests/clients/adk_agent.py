"""TEST CODE: Google ADK runs the weather agent (agent_common) on a model reached through LiteLLM
(`LiteLlm("openai/gpt-4o-mini")` with the fake server as its OpenAI-compatible api_base).
ADK traces with the global OpenTelemetry provider (otel_setup). The session is ADK's own
session id. Calls: chat with a tool, chat after the tool result (both non-streaming)."""
from __future__ import annotations

import asyncio
import os

import agent_common as C

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import
os.environ.setdefault("ADK_DISABLE_TELEMETRY_UPLOAD", "1")

from google.adk.agents import LlmAgent  # noqa: E402
from google.adk.models.lite_llm import LiteLlm  # noqa: E402
from google.adk.runners import InMemoryRunner  # noqa: E402
from google.genai import types  # noqa: E402
from otel_setup import sdk_provider  # noqa: E402


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return C.get_weather(city)


async def run() -> None:
    model = LiteLlm(model=f"openai/{C.MODEL}", api_base=C.FAKE_OPENAI_URL, api_key=C.API_KEY)
    agent = LlmAgent(name=C.AGENT_NAME, model=model, instruction=C.INSTRUCTIONS, tools=[get_weather])
    runner = InMemoryRunner(agent=agent, app_name="weather_app")
    await runner.session_service.create_session(app_name="weather_app", user_id="user-1", session_id=C.SESSION_ID)
    question = types.Content(role="user", parts=[types.Part(text=C.QUESTION)])
    async for _ in runner.run_async(user_id="user-1", session_id=C.SESSION_ID, new_message=question):
        pass


def main() -> None:
    provider = sdk_provider()
    asyncio.run(run())
    provider.shutdown()


if __name__ == "__main__":
    main()
