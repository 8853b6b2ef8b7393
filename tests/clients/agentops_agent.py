"""TEST CODE: AgentOps (its SDK instruments the OpenAI client) drives the weather agent
(agent_common). agentops.init exchanges its API key for a token at `{endpoint}/v3/auth/token`
(the fake server answers that route) and exports OTLP/HTTP to `exporter_endpoint`: the daemon.
The agent and tool are AgentOps' decorators (@agent, @tool); the whole run is one AgentOps
trace. Calls: chat with a tool, chat streaming with usage, embeddings."""
from __future__ import annotations

import json

import agent_common as C
import agentops
import openai
from agentops.sdk.decorators import agent, tool


@tool(name=C.TOOL_NAME)
def get_weather(city: str) -> str:
    return C.get_weather(city)


@agent(name=C.AGENT_NAME)
class WeatherAgent:
    def __init__(self) -> None:
        self.client = openai.OpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY)

    def answer(self, question: str) -> None:
        messages = C.chat_messages()
        first = self.client.chat.completions.create(model=C.MODEL, messages=messages, tools=[C.CHAT_TOOL])
        call = first.choices[0].message.tool_calls[0]
        get_weather(**json.loads(call.function.arguments))
        C.drain(self.client.chat.completions.create(model=C.MODEL, messages=C.with_tool_result(messages, call),
                                                    stream=True, stream_options={"include_usage": True}))
        self.client.embeddings.create(model=C.EMBEDDING_MODEL, input=["Lisbon"])


def main() -> None:
    agentops.init(api_key="00000000-0000-4000-8000-000000000000", endpoint=C.FAKE_OPENAI_URL.removesuffix("/v1"),
                  exporter_endpoint=C.TRACES_URL, auto_start_session=False, trace_name=C.SESSION_ID,
                  env_data_opt_out=True, log_level="WARNING")
    trace = agentops.start_trace(C.SESSION_ID)
    WeatherAgent().answer(C.QUESTION)
    agentops.end_trace(trace)


if __name__ == "__main__":
    main()
