"""TEST CODE: logfire's pending spans. An agent's LLM call ends, then its tool call blocks for
BLOCK_S seconds and returns.

logfire sends a pending span (a zero-length placeholder whose parent is the open span) only
through the exporters that handle them: the exporter to a Logfire backend, its test exporter
and its simple console exporter (logfire/_internal/config.py: `pending_span_exporter_types`,
with `advanced.pending_spans`, on by default). Its plain OTLP exporter (OTEL_EXPORTER_OTLP_*)
does not. So the "backend" here is the daemon: `advanced.base_url` points logfire's own
exporter at it (OTLP/HTTP /v1/traces, gzip), with a token the daemon does not check. logfire's
token check (GET /v1/info) gets a 404 from the daemon and only logs a warning.
Prints one JSON line: the UNIX times of the block's start and end.
"""
from __future__ import annotations

import json
import os
import time

import logfire

ENDPOINT = os.environ.get("OTLP_ENDPOINT", "http://127.0.0.1:4318")
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
TOOL = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}


def main() -> None:
    logfire.configure(send_to_logfire=True, token="pylf_v1_us_notarealtokennotarealtoken0000000000",
                      service_name=os.environ.get("SERVICE_NAME", "logfire-pending"), console=False,
                      advanced=logfire.AdvancedOptions(base_url=ENDPOINT), metrics=False)
    marks: dict[str, float] = {}
    with logfire.span("invoke_agent planner", **AGENT):  # type: ignore[arg-type]
        with logfire.span("chat gpt-4o-mini", **CHAT):  # type: ignore[arg-type]
            time.sleep(0.1)
        marks["block_start"] = time.time()
        with logfire.span("execute_tool search", **TOOL):  # type: ignore[arg-type]
            time.sleep(float(os.environ.get("BLOCK_S", 15)))
        marks["block_end"] = time.time()
    logfire.force_flush()
    logfire.shutdown()
    marks["end"] = time.time()
    print(json.dumps(marks))


if __name__ == "__main__":
    main()
