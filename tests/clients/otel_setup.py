"""TEST CODE: an OpenTelemetry SDK tracer provider exporting OTLP/HTTP to the daemon, for the
client scripts whose family leaves the SDK set-up to the application (standard SDK only)."""
from __future__ import annotations

import agent_common as C
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def sdk_provider() -> TracerProvider:
    """The global provider: the SDK's batching processor, exporting at shutdown. Why one export:
    a trace's root ends last, so when it leaves in a later request than its children (one
    export per span, or a 5 s batch delay passing mid-run), the children reach the daemon before
    the session the root names, and the genai processor gives them the trace's id instead
    (a known limit: the session of a trace is resolved per request, not across requests)."""
    provider = TracerProvider(resource=Resource.create({"service.name": C.SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=C.TRACES_URL),
                                                   schedule_delay_millis=60_000))
    trace.set_tracer_provider(provider)
    return provider
