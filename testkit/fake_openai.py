"""TEST CODE: an OpenAI-compatible API on 127.0.0.1, for the real agent clients of tests/clients/.

Why a fake: the tests run with no network, and what they check is what the instrumentation
families make of OpenAI's answers, so the server's answers must be known to the test. Every
answer is deterministic and recorded (`FakeOpenAI.calls`): the n-th call of a run has

    prompt_tokens = 1200 + 100 n   (of which cached_tokens = 1024: prompt_tokens INCLUDES them)
    completion_tokens = 40 + 3 n   (reasoning_tokens = 0), total = prompt + completion

and the response model is the dated snapshot of the requested one (`gpt-4o-mini` answers as
`gpt-4o-mini-2024-07-18`), as OpenAI does, so a request/response model mix-up shows.
Embeddings use `8 n` prompt tokens and no completion.

Routes, as OpenAI shapes them (SSE when `stream: true`, with a last usage chunk when
`stream_options.include_usage` is set; the Responses API streams its typed events):
- `POST /v1/chat/completions`: a request with `tools` and no tool result yet answers with a
  call of its first tool (`TOOL_ARGUMENTS`); otherwise with `FINAL_TEXT`.
- `POST /v1/responses`: the same rule (a `function_call_output` input item is a tool result).
- `POST /v1/embeddings`: one 8-float vector per input, as floats or base64 (`encoding_format`).
- `POST /v3/auth/token`: AgentOps' key exchange (its SDK asks before exporting), a fixed JWT.
Anything else is a 404 and is recorded in `unknown`, so a test can show what a client asked.

Fault injection: `stall[model] = seconds` makes every chat request for that model wait that long
and then answer 504 (a provider that times out: the client's own timeout cuts it first); such a
request is not one of `calls` (nothing was answered) but is counted in `stalled[model]`.
"""
from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06",
             "text-embedding-3-small": "text-embedding-3-small"}
CACHED_TOKENS = 1024
TOOL_ARGUMENTS = '{"city": "Lisbon"}'
FINAL_TEXT = "It is sunny in Lisbon, 24 degrees."
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z: answers carry no wall-clock time
DIMENSIONS = 8


@dataclass(frozen=True)
class Call:
    """One answer the server produced: what a stored span must carry."""

    number: int
    endpoint: str  # chat | responses | embeddings
    stream: bool
    request_model: str
    response_model: str
    response_id: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    tool_name: str | None  # the tool the answer calls, None for a text answer
    tool_call_id: str | None


@dataclass
class State:
    calls: list[Call] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    stalled: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_call(self, endpoint: str, body: dict[str, Any], tool: str | None) -> Call:
        with self.lock:
            n = len(self.calls) + 1
            model = str(body.get("model") or "gpt-4o-mini")
            if "/" in model:  # LiteLLM-style "openai/gpt-4o-mini" never reaches OpenAI prefixed, but be kind
                model = model.rsplit("/", 1)[-1]
            embedding = endpoint == "embeddings"
            call = Call(number=n, endpoint=endpoint, stream=bool(body.get("stream")), request_model=model,
                        response_model=SNAPSHOTS.get(model, model),
                        response_id=(f"resp_fake{n:04d}" if endpoint == "responses" else f"chatcmpl-fake{n:04d}"),
                        input_tokens=8 * n if embedding else 1200 + 100 * n,
                        output_tokens=0 if embedding else 40 + 3 * n,
                        cached_tokens=0 if embedding else CACHED_TOKENS, reasoning_tokens=0,
                        tool_name=tool, tool_call_id=f"call_fake{n:04d}" if tool else None)
            self.calls.append(call)
            return call


def _first_tool(body: dict[str, Any], done: bool) -> str | None:
    """The tool to call: the first one offered, unless a tool result is already in the input."""
    tools = body.get("tools") or []
    if done or not tools:
        return None
    tool = tools[0]
    return tool.get("function", {}).get("name") if "function" in tool else tool.get("name")


def _chat_usage(call: Call) -> dict[str, Any]:
    return {"prompt_tokens": call.input_tokens, "completion_tokens": call.output_tokens,
            "total_tokens": call.input_tokens + call.output_tokens,
            "prompt_tokens_details": {"cached_tokens": call.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": call.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _responses_usage(call: Call) -> dict[str, Any]:
    return {"input_tokens": call.input_tokens, "input_tokens_details": {"cached_tokens": call.cached_tokens},
            "output_tokens": call.output_tokens, "output_tokens_details": {"reasoning_tokens": call.reasoning_tokens},
            "total_tokens": call.input_tokens + call.output_tokens}


def _chat_message(call: Call) -> dict[str, Any]:
    if call.tool_name:
        return {"role": "assistant", "content": None, "refusal": None, "annotations": [],
                "tool_calls": [{"id": call.tool_call_id, "type": "function",
                                "function": {"name": call.tool_name, "arguments": TOOL_ARGUMENTS}}]}
    return {"role": "assistant", "content": FINAL_TEXT, "refusal": None, "annotations": []}


def _chat_body(call: Call) -> dict[str, Any]:
    return {"id": call.response_id, "object": "chat.completion", "created": CREATED, "model": call.response_model,
            "choices": [{"index": 0, "message": _chat_message(call), "logprobs": None,
                         "finish_reason": "tool_calls" if call.tool_name else "stop"}],
            "usage": _chat_usage(call), "service_tier": "default", "system_fingerprint": "fp_fake0001"}


def _chat_chunks(call: Call, include_usage: bool) -> list[dict[str, Any]]:
    head = {"id": call.response_id, "object": "chat.completion.chunk", "created": CREATED,
            "model": call.response_model, "service_tier": "default", "system_fingerprint": "fp_fake0001"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **({"usage": None} if include_usage else {})}

    if call.tool_name:
        deltas = [{"role": "assistant", "content": None, "tool_calls": [
                      {"index": 0, "id": call.tool_call_id, "type": "function",
                       "function": {"name": call.tool_name, "arguments": ""}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGUMENTS[:9]}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGUMENTS[9:]}}]}]
    else:
        words = FINAL_TEXT.split(" ")
        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]
    chunks = [chunk(delta) for delta in deltas]
    chunks.append(chunk({}, "tool_calls" if call.tool_name else "stop"))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _chat_usage(call)})
    return chunks


def _response_output(call: Call) -> dict[str, Any]:
    if call.tool_name:
        return {"type": "function_call", "id": f"fc_fake{call.number:04d}", "call_id": call.tool_call_id,
                "name": call.tool_name, "arguments": TOOL_ARGUMENTS, "status": "completed"}
    return {"type": "message", "id": f"msg_fake{call.number:04d}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": [], "logprobs": []}]}


def _response_body(call: Call, body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    return {"id": call.response_id, "object": "response", "created_at": CREATED, "status": status,
            "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": call.response_model, "output": [_response_output(call)] if done else [],
            "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled",
            "usage": _responses_usage(call) if done else None, "user": None, "metadata": {}}


def _response_events(call: Call, body: dict[str, Any]) -> list[dict[str, Any]]:
    item = _response_output(call)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response_body(call, body, "in_progress")},
        {"type": "response.in_progress", "response": _response_body(call, body, "in_progress")},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", **({"arguments": ""} if call.tool_name else {"content": []})}}]
    if call.tool_name:
        events += [{"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": 0,
                    "delta": TOOL_ARGUMENTS},
                   {"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": 0,
                    "arguments": TOOL_ARGUMENTS}]
    else:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events += [{"type": "response.content_part.added", **where, "part": part},
                   {"type": "response.output_text.delta", **where, "delta": FINAL_TEXT, "logprobs": []},
                   {"type": "response.output_text.done", **where, "text": FINAL_TEXT, "logprobs": []},
                   {"type": "response.content_part.done", **where, "part": {**part, "text": FINAL_TEXT}}]
    events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed", "response": _response_body(call, body)}]
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


async def _sse(request: web.Request, events: list[dict[str, Any]], named: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        await response.write(f"{head}data: {json.dumps(event)}\n\n".encode())
    if not named:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


class FakeOpenAI:
    """The server, on its own thread and event loop; `url` is the OpenAI `base_url` (…/v1)."""

    def __init__(self) -> None:
        self.state = State()
        self.stall: dict[str, float] = {}  # model -> seconds before a 504 (see the module docstring)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self.state.calls)

    def reset(self) -> None:
        with self.state.lock:
            self.state.calls.clear()
            self.state.unknown.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v3/auth/token", self.agentops_token)
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        delay = self.stall.get(str(body.get("model")))
        if delay:
            with self.state.lock:
                self.state.stalled[str(body.get("model"))] = self.state.stalled.get(str(body.get("model")), 0) + 1
            await asyncio.sleep(delay)
            return web.json_response({"error": {"message": "upstream timed out", "type": "timeout"}}, status=504)
        done = any(message.get("role") == "tool" for message in body.get("messages", []))
        call = self.state.next_call("chat", body, _first_tool(body, done))
        if not call.stream:
            return web.json_response(_chat_body(call))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _sse(request, _chat_chunks(call, include_usage), named=False)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        items = body.get("input") if isinstance(body.get("input"), list) else []
        done = any(isinstance(item, dict) and item.get("type") == "function_call_output" for item in items)
        call = self.state.next_call("responses", body, _first_tool(body, done))
        if not call.stream:
            return web.json_response(_response_body(call, body))
        return await _sse(request, _response_events(call, body), named=True)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        call = self.state.next_call("embeddings", body, None)
        data = []
        for index in range(len(inputs)):
            vector = [round((index + 1) * 0.125 * (d + 1), 3) for d in range(DIMENSIONS)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return web.json_response({"object": "list", "data": data, "model": call.response_model,
                                  "usage": {"prompt_tokens": call.input_tokens, "total_tokens": call.input_tokens}})

    async def agentops_token(self, request: web.Request) -> web.Response:
        # A JWT-shaped token (header.payload.signature); the SDK only sends it back as a bearer.
        return web.json_response({"token": "eyJhbGciOiJub25lIn0.eyJwcm9qZWN0X2lkIjoiZmFrZSJ9.c2ln",
                                  "project_id": "fake-project", "project_prem_status": "free"})

    async def unknown(self, request: web.Request) -> web.Response:
        with self.state.lock:
            self.state.unknown.append(f"{request.method} {request.path}")
        return web.json_response({"error": {"message": f"no route {request.path}", "type": "invalid_request_error"}},
                                 status=404)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
