"""TEST CODE: the Langfuse SDK (v3+, OpenTelemetry-based) drives the weather agent (agent_common),
with its OpenAI drop-in `langfuse.openai`. Its host is the daemon: the SDK exports OTLP/HTTP to
{host}/api/public/otel/v1/traces, which the daemon's otlp receiver takes as a traces path. The
agent and tool are Langfuse observations (as_type agent / tool); the session is
`propagate_attributes(session_id=...)`. Calls: chat with a tool, chat streaming with usage,
embeddings (langfuse.openai traces chat and embeddings)."""
from __future__ import annotations

import json
import os

import agent_common as C

os.environ.update({"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test",
                   "LANGFUSE_BASE_URL": C.OTLP_ENDPOINT, "LANGFUSE_HOST": C.OTLP_ENDPOINT})

from langfuse import Langfuse, propagate_attributes  # noqa: E402 - reads the environment above
from langfuse.openai import OpenAI  # noqa: E402


def main() -> None:
    langfuse = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", base_url=C.OTLP_ENDPOINT,
                        flush_at=1)
    client = OpenAI(base_url=C.FAKE_OPENAI_URL, api_key=C.API_KEY)
    with langfuse.start_as_current_observation(as_type="agent", name=C.AGENT_NAME):
        with propagate_attributes(session_id=C.SESSION_ID):
            messages = C.chat_messages()
            first = client.chat.completions.create(model=C.MODEL, messages=messages, tools=[C.CHAT_TOOL])
            call = first.choices[0].message.tool_calls[0]
            with langfuse.start_as_current_observation(as_type="tool", name=C.TOOL_NAME, input=call.function.arguments):
                C.get_weather(**json.loads(call.function.arguments))
            C.drain(client.chat.completions.create(model=C.MODEL, messages=C.with_tool_result(messages, call),
                                                   stream=True, stream_options={"include_usage": True}))
            client.embeddings.create(model=C.EMBEDDING_MODEL, input=["Lisbon"])
    langfuse.flush()
    langfuse.shutdown()


if __name__ == "__main__":
    main()
