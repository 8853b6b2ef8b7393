"""TEST CODE: run a real agent client family against the fake OpenAI server and the real daemon,
then read its spans back from the daemon's store (chDB, through the explorer's query API).

- `family_python(family)`: the family's virtualenv (`make clients`, part of `make test`, builds
  .cache/clients/<family>); missing, the test is skipped, or fails under CI=true.
- `ClientStack`: one daemon (config/default.yaml: genai processor, chDB store, explorer) and one
  `FakeOpenAI` per test module; `run(family, script)` runs tests/clients/<script>.py as a
  subprocess with the family's python and returns what the server answered (`calls`) and the
  spans of that run's service as stored.
- `llm_problems`, `role_problems`, `session_problems`: what a user would check on the stored
  spans, as a list of readable mismatches (empty: all good), so a failure names every wrong key.

Prices (`PRICES`) are the test's own, USD per million tokens: the response snapshot and the
requested model are priced differently, so a cost from the wrong model shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from testkit.fake_openai import Call, FakeOpenAI
from testkit.harness import ROOT, Daemon, default_config_env, wait_until

CLIENTS = ROOT / "tests" / "clients"
VENVS = ROOT / ".cache" / "clients"
DEFAULT_CONFIG = (ROOT / "config" / "default.yaml").read_text()
OVERLAY = """
processors:
  genai: {prices_file: "{dir}/prices.yaml"}
  batch: {timeout: 50ms}
service:
  extensions: [health_check, debug_api, explorer, file_storage]
"""
# (model, input, output, cache_read) in USD per million tokens
PRICES = (("gpt-4o-mini-2024-07-18", 0.15, 0.60, 0.075), ("gpt-4o-mini", 0.30, 1.20, 0.15),
          ("text-embedding-3-small", 0.02, 0.0, 0.02))
RATES = {model: (i / 1e6, o / 1e6, c / 1e6) for model, i, o, c in PRICES}
OPERATION = {"chat": "chat", "responses": "chat", "embeddings": "embeddings"}


def family_python(family: str) -> Path:
    """The family venv's python; skipped when missing (a failure under CI=true)."""
    python = VENVS / family / "bin" / "python"
    if not (VENVS / family / ".installed-stamp").exists():
        message = f"the {family} client venv is missing: `make clients` (part of `make test`) builds it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python


def expected_cost(call: Call, cache: bool = True, model: str | None = None) -> float:
    """Tokens × the test's rates for the response model (or `model`): cached input at the cache
    rate (all input at the input rate when the family does not report the cache, `cache=False`)."""
    inp, out, cache_rate = RATES[model or call.response_model]
    cached = call.cached_tokens if cache else 0
    return (call.input_tokens - cached) * inp + cached * cache_rate + call.output_tokens * out


@dataclass(frozen=True)
class Stored:
    name: str
    scope: str
    trace_id: str
    span_id: str
    parent: str
    status: str
    attrs: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.attrs.get(key)


@dataclass
class Run:
    family: str
    service: str
    session: str
    calls: list[Call]
    spans: list[Stored]
    output: str

    def llm_spans(self, call: Call) -> list[Stored]:
        """The stored spans that carry this call's token counts (its usage is unique in a run)."""
        tokens = str(call.input_tokens)
        return [s for s in self.spans if s.get("gen_ai.usage.input_tokens") == tokens]

    def with_attr(self, key: str, value: str) -> list[Stored]:
        return [s for s in self.spans if s.get(key) == value]


class ClientStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.fake = FakeOpenAI()
        self.daemon: Daemon | None = None
        self.url = ""

    def start(self) -> "ClientStack":
        lines = ["models:"]
        for model, inp, out, cached in PRICES:
            lines.append(f"  - {{model: {model}, input: {inp}, output: {out}, cache_read: {cached}}}")
        (self.workdir / "prices.yaml").write_text("\n".join(lines) + "\n")
        daemon = Daemon(DEFAULT_CONFIG, workdir=self.workdir, overlay=OVERLAY)
        daemon.env = {**default_config_env(daemon, self.workdir / "data"), "AGENTDBG_EXPLORER_TOKEN": ""}
        self.fake.start()
        self.daemon = daemon.start(wait=False)
        # chDB's first start takes ~20 s on a loaded 2-core machine: more than the harness waits
        wait_until(daemon.healthy, timeout=120, interval=0.2, message=f"daemon health (log: {daemon.log_path})")
        self.url = f"http://127.0.0.1:{daemon.ports['explorer']}"
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon.kill()
        self.fake.stop()

    @property
    def otlp_http(self) -> str:
        assert self.daemon is not None
        return f"http://127.0.0.1:{self.daemon.ports['http']}"

    def query(self, sql: str) -> list[dict[str, Any]]:
        answer = requests.post(f"{self.url}/api/query", json={"sql": sql, "format": "json"}, timeout=20)
        assert answer.status_code == 200, answer.text
        return json.loads(answer.text) if answer.text.strip() else []

    def stored(self, service: str, root: str | None = None) -> list[Stored]:
        """The stored spans of a service; with `root`, of the traces holding a span of that name."""
        where = f"ServiceName = '{service}'"
        if root is not None:
            where += f" AND TraceId IN (SELECT TraceId FROM otel.otel_traces WHERE SpanName = '{root}')"
        rows = self.query("SELECT SpanName, ScopeName, TraceId, SpanId, ParentSpanId, StatusCode, SpanAttributes "
                          f"FROM otel.otel_traces WHERE {where} ORDER BY Timestamp")
        return [Stored(r["SpanName"], r["ScopeName"], r["TraceId"], r["SpanId"], r["ParentSpanId"], r["StatusCode"],
                       r["SpanAttributes"]) for r in rows]

    def run(self, family: str, script: str, env: dict[str, str] | None = None, timeout: float = 180,
            expect: int = 1, traced: frozenset[str] | None = None, fixed_service: str | None = None,
            root: str | None = None) -> Run:
        """Run tests/clients/<script>.py with the family's python; wait until every call the fake
        server answered (of the `traced` endpoints, default all) has a stored span with its
        tokens, and at least `expect` spans are there. A family that names its own service
        (`fixed_service`) is told apart by the traces holding a span named `root` (a format of
        the run's `session`)."""
        python = family_python(family)
        self.fake.reset()
        service = f"{script}-{uuid.uuid4().hex[:8]}"
        session = f"sess-{script}-{uuid.uuid4().hex[:6]}"
        service_name, root_name = fixed_service or service, root.format(session=session) if root else None
        run_env = {**os.environ, "FAKE_OPENAI_URL": self.fake.url, "OTLP_ENDPOINT": self.otlp_http,
                   "SERVICE_NAME": service, "SESSION_ID": session, "OTEL_SERVICE_NAME": service,
                   "PYTHONPATH": str(CLIENTS), **(env or {})}
        for key in ("VIRTUAL_ENV", "PYTHONHOME"):
            run_env.pop(key, None)
        done = subprocess.run([str(python), str(CLIENTS / f"{script}.py")], cwd=self.workdir, env=run_env,
                              capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{script} failed:\n{output[-6000:]}"
        calls = self.fake.calls
        assert calls, f"{script} made no call to the fake server; unknown routes: {self.fake.state.unknown}\n{output}"

        def arrived() -> list[Stored] | None:
            spans = self.stored(service_name, root_name)
            have = {s.get("gen_ai.usage.input_tokens") for s in spans} | {
                s.get("llm.token_count.prompt") for s in spans}
            wanted = [c for c in calls if traced is None or c.endpoint in traced]
            return spans if len(spans) >= expect and all(str(c.input_tokens) in have for c in wanted) else None

        try:
            spans = wait_until(arrived, timeout=30, interval=0.3, message=f"the spans of {script}")
        except AssertionError as late:
            spans = self.stored(service_name, root_name)
            raise AssertionError(f"{script}: stored {len(spans)} spans, calls {calls}:\n"
                                 + "\n".join(f"{s.name} {s.attrs}" for s in spans) + f"\n{output[-3000:]}") from late
        return Run(family, service_name, session, calls, spans, output)


def client_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientStack]:
    """Body of a test module's stack fixture: one daemon and one fake server for the module."""
    stack = ClientStack(tmp_path_factory.mktemp("clients")).start()
    try:
        yield stack
    finally:
        stack.stop()


# -- the checks -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reports:
    """What a family reports of a model call, where it falls short of what the server answered:
    `cache=False`: no cached-token count; `request_model`: the stored request model as a format
    of the call's `request` and `response` models ("{response}": the family records the answer's
    snapshot as the requested model; None: it records none, so the stored span must not carry
    the response's model as the requested one); `response_model=False`: none recorded (the cost
    is then the request model's); `operation`: the family's name for a chat call."""

    cache: bool = True
    request_model: str | None = "{request}"
    response_model: bool = True
    operation: str = "chat"


def llm_problems(run: Run, provider: str = "openai", endpoints: frozenset[str] | None = None,
                 reports: Reports = Reports()) -> list[str]:
    """Every call the fake server answered (of `endpoints`, default all) against each stored span
    carrying its token counts: operation, provider, models, tokens, cache, cost."""
    problems: list[str] = []
    for call in run.calls:
        if endpoints is not None and call.endpoint not in endpoints:
            continue
        spans = run.llm_spans(call)
        if not spans:
            problems.append(f"call {call.number} ({call.endpoint}): no stored span has input_tokens "
                            f"{call.input_tokens}")
        for span in spans:
            problems += _call_problems(call, span, provider, reports)
    return problems


def _call_problems(call: Call, span: Stored, provider: str, reports: Reports) -> list[str]:
    requested = None if reports.request_model is None else reports.request_model.format(
        request=call.request_model, response=call.response_model)
    operation = OPERATION[call.endpoint] if call.endpoint == "embeddings" else reports.operation
    want = {"gen_ai.operation.name": operation, "gen_ai.provider.name": provider,
            "gen_ai.request.model": requested,
            "gen_ai.response.model": call.response_model if reports.response_model else None,
            "gen_ai.usage.input_tokens": str(call.input_tokens)}
    if call.endpoint != "embeddings":
        want["gen_ai.usage.output_tokens"] = str(call.output_tokens)
        want["gen_ai.usage.cache_read.input_tokens"] = str(call.cached_tokens) if reports.cache else None
    problems = [f"call {call.number} ({call.endpoint}) span {span.name!r}: {key} = {span.get(key)!r}, "
                f"want {value!r}" for key, value in want.items() if span.get(key) != value]
    cost = span.get("gen_ai.usage.cost")
    expected = expected_cost(call, reports.cache and call.endpoint != "embeddings",
                             None if reports.response_model else call.request_model)
    if cost is None or abs(float(cost) - expected) > 1e-12 + 1e-9 * expected:
        problems.append(f"call {call.number} span {span.name!r}: cost {cost!r}, want {expected!r}")
    elif len(Decimal(cost).as_tuple().digits) > 15:  # stored as a rounded number, not float noise
        problems.append(f"call {call.number} span {span.name!r}: cost stored as {cost!r}")
    return problems


def role_problems(run: Run, agent: str = "weather_agent", tool: str = "get_weather",
                  tool_call_id: bool = True) -> list[str]:
    """An agent span and a tool span, named; no provider on either (they call no model)."""
    problems: list[str] = []
    agents = [s for s in run.with_attr("gen_ai.agent.name", agent)
              if s.get("gen_ai.operation.name") == "invoke_agent"]
    tools = [s for s in run.with_attr("gen_ai.tool.name", tool) if s.get("gen_ai.operation.name") == "execute_tool"]
    if not agents:
        problems.append(f"no invoke_agent span with gen_ai.agent.name {agent!r}")
    if not tools:
        problems.append(f"no execute_tool span with gen_ai.tool.name {tool!r}")
    ids = {c.tool_call_id for c in run.calls if c.tool_call_id}
    named = run.with_attr("gen_ai.tool.name", tool)
    if tool_call_id and not any(s.get("gen_ai.tool.call.id") in ids for s in named):
        problems.append(f"no span of tool {tool!r} carries the call id the model gave ({ids}): "
                        f"{[s.get('gen_ai.tool.call.id') for s in named]}")
    for span in agents + tools:
        if span.get("gen_ai.provider.name") is not None:
            problems.append(f"{span.get('gen_ai.operation.name')} span {span.name!r} has gen_ai.provider.name "
                            f"{span.get('gen_ai.provider.name')!r}")
    return problems


def session_problems(run: Run, session: str | None = None) -> list[str]:
    """Every stored span of the run carries the session the agent set (`session="trace"`: the
    family has no session of its own, so each trace is one, named by its trace id)."""
    if session == "trace":
        return [f"span {s.name!r}: gen_ai.conversation.id {s.get('gen_ai.conversation.id')!r}, want its trace id"
                for s in run.spans if s.get("gen_ai.conversation.id") != s.trace_id]
    want = session or run.session
    wrong = {(s.name, s.get("gen_ai.conversation.id")) for s in run.spans if s.get("gen_ai.conversation.id") != want}
    return [f"span {name!r}: gen_ai.conversation.id {value!r}, want {want!r}" for name, value in sorted(
        wrong, key=str)]


def describe(run: Run) -> str:
    """The run's stored spans, for a failure message."""
    return "\n".join(f"- {s.name} [{s.scope}] {dict(sorted(s.attrs.items()))}" for s in run.spans)
