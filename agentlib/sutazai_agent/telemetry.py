"""One call sets an agent's OpenTelemetry up to export to the daemon: `configure(...)`.

- Export: OTLP over HTTP (`http/protobuf`, the default) or gRPC (`grpc`, with the `grpc` extra).
  Arguments win; unset ones come from the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
  `..._TRACES_ENDPOINT`, `..._PROTOCOL`, `..._HEADERS`, `OTEL_SERVICE_NAME`,
  `OTEL_RESOURCE_ATTRIBUTES`), as the SDK reads them; with neither, `http://localhost:4318`.
  Spans leave on a batch processor's thread: a slow or dead daemon never holds a call.
- Attributes, by the GenAI conventions the daemon normalises to: the resource's `service.name`;
  on every span `gen_ai.agent.name` (and `gen_ai.agent.id`), and inside `with session("id"):`
  `gen_ai.conversation.id`, unless the span already has its own.
- Instrumentations: every installed one of `instrumentations.KNOWN` (openai-v2, anthropic, ...).
- Live spans (`live_spans=True`, the default): when the `partial-span-processor` package is
  installed, open agent, tool and model-call spans (`gen_ai.operation.name` `invoke_agent`,
  `execute_tool`, `chat`, `text_completion`, `generate_content`, `embeddings`) send heartbeats
  (OTLP log records with the span so far) to the same endpoint, so the daemon
  sees a stuck agent before its span ends. Without the package, nothing happens.
- Decisions: a `DecisionFeed` of the daemon's debug API (`debug_url`, else `AGENTDBG_DEBUG_URL`,
  else `http://localhost:10205`; `token`, else `AGENTDBG_DEBUG_TOKEN`), which the breakers and
  throttles follow. `decisions=False` leaves it out (local state only).

`configure` is idempotent: a second call returns the agent already configured.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from sutazai_agent import instrumentations
from sutazai_agent.feed import DecisionFeed

LOG = logging.getLogger("sutazai_agent")
AGENT_NAME, AGENT_ID, CONVERSATION_ID = "gen_ai.agent.name", "gen_ai.agent.id", "gen_ai.conversation.id"
OPERATION = "gen_ai.operation.name"
# Model calls too: while a long (streaming) LLM call is open, the daemon must see it as the agent's
# progress, or an agent waiting 30 s on its model would look blocked (deadlock's no-false-positive
# case). A call shorter than the heartbeat interval sends nothing.
LIVE_OPERATIONS = frozenset({"invoke_agent", "execute_tool", "chat", "text_completion", "generate_content",
                             "embeddings"})
DEFAULT_HTTP = "http://localhost:4318"
DEFAULT_DEBUG = "http://localhost:10205"

_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("sutazai_session", default=None)


@contextlib.contextmanager
def session(session_id: str) -> Iterator[str]:
    """Every span started inside (on this thread or task) carries `gen_ai.conversation.id`."""
    token = _session.set(session_id)
    try:
        yield session_id
    finally:
        _session.reset(token)


def current_session() -> str | None:
    return _session.get()


class AgentAttributes(SpanProcessor):
    """Stamps the agent and the current session on each span as it starts."""

    def __init__(self, agent_name: str | None, agent_id: str | None) -> None:
        self.fixed = {k: v for k, v in ((AGENT_NAME, agent_name), (AGENT_ID, agent_id)) if v}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        present = span.attributes or {}
        for key, value in self.fixed.items():
            if key not in present:
                span.set_attribute(key, value)
        conversation = _session.get()
        if conversation and CONVERSATION_ID not in present:
            span.set_attribute(CONVERSATION_ID, conversation)


class LiveSpans(SpanProcessor):
    """Hands only agent, tool and model-call spans (LIVE_OPERATIONS) to the heartbeat processor."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.live: set[int] = set()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if (span.attributes or {}).get(OPERATION) in LIVE_OPERATIONS:
            self.live.add(span.context.span_id)
            self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.span_id in self.live:
            self.live.discard(span.context.span_id)
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


@dataclass
class Agent:
    """What `configure` set up."""

    provider: TracerProvider
    name: str | None
    feed: DecisionFeed | None
    instrumented: list[str] = field(default_factory=list)
    live_spans: bool = False
    _tracer: trace.Tracer | None = None

    def tracer(self) -> trace.Tracer:
        if self._tracer is None:
            self._tracer = self.provider.get_tracer("sutazai_agent")
        return self._tracer

    def shutdown(self) -> None:
        """Stop following decisions and flush the spans still queued."""
        global _agent
        if self.feed is not None:
            self.feed.stop()
        self.provider.shutdown()
        if _agent is self:
            _agent = None


_agent: Agent | None = None


def current() -> Agent | None:
    """The agent `configure` set up, if any."""
    return _agent


def tracer() -> trace.Tracer:
    """The configured agent's tracer (its provider, global or not), else the global one."""
    return _agent.tracer() if _agent is not None else trace.get_tracer("sutazai_agent")


def configure(service_name: str | None = None, agent_name: str | None = None, agent_id: str | None = None, *,
              endpoint: str | None = None, protocol: str | None = None, headers: Mapping[str, str] | None = None,
              instrument: bool | Sequence[str] = True, live_spans: bool = True, decisions: bool = True,
              debug_url: str | None = None, token: str | None = None, set_global: bool = True,
              exporter: SpanExporter | None = None, resource_attributes: Mapping[str, Any] | None = None) -> Agent:
    """Set up tracing to the daemon, the instrumentations and the decision feed; see the module
    docstring. `exporter` replaces the OTLP one (a test's in-memory exporter)."""
    global _agent
    if _agent is not None:
        return _agent
    attributes = dict(resource_attributes or {})
    if service_name:
        attributes["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(AgentAttributes(agent_name, agent_id))
    live = live_spans and _add_live_spans(provider, endpoint, headers)
    provider.add_span_processor(BatchSpanProcessor(exporter or span_exporter(endpoint, protocol, headers)))
    if set_global:
        trace.set_tracer_provider(provider)
    only = None if isinstance(instrument, bool) else list(instrument)
    enabled = instrumentations.enable(provider, only) if instrument else []
    feed = None
    if decisions:
        feed = DecisionFeed(debug_url or os.environ.get("AGENTDBG_DEBUG_URL") or DEFAULT_DEBUG,
                            token if token is not None else os.environ.get("AGENTDBG_DEBUG_TOKEN") or None).start()
    _agent = Agent(provider, agent_name, feed, enabled, live)
    return _agent


def _protocol(protocol: str | None) -> str:
    return (protocol or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()


def _http_url(endpoint: str | None, path: str, signal_variable: str) -> str | None:
    """The full URL of an OTLP/HTTP signal, or None to let the exporter read the variables."""
    if endpoint:
        return endpoint if endpoint.rstrip("/").endswith(path) else endpoint.rstrip("/") + path
    if os.environ.get(signal_variable) or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    return DEFAULT_HTTP + path


def span_exporter(endpoint: str | None, protocol: str | None, headers: Mapping[str, str] | None) -> SpanExporter:
    if _protocol(protocol) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        return GrpcExporter(endpoint=endpoint, headers=dict(headers) if headers else None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=_http_url(endpoint, "/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                            headers=headers)


def _add_live_spans(provider: TracerProvider, endpoint: str | None, headers: Mapping[str, str] | None) -> bool:
    try:
        from partial_span_processor import PartialSpanProcessor  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False  # the package is optional: no heartbeats without it
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    logs = OTLPLogExporter(endpoint=_http_url(endpoint, "/v1/logs", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
                           headers=headers)
    provider.add_span_processor(LiveSpans(PartialSpanProcessor(logs, resource=provider.resource)))
    return True
