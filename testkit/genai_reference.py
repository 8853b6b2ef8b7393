"""The pure-Python reference of the genai processor's compiled wire work (native/: the picker
and the splice): the test oracle of tests/unit/test_native_genai.py, never a production path.

`reference_process` is the processor's walk as it was before that work moved into the
extension: it reads the parsed (upb) message, decodes the wanted attributes span by span
(`pick`) and merges each span's new attributes into it with `MergeFromString`. It drives the
given processor's own normaliser, session memory and encoder, so comparing its output with the
processor's shows exactly what the compiled path changes: nothing.
"""
from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from processors.genai import aliases as A
from processors.genai.normalise import SpanFacts
from processors.genai.session import BatchSessions
from processors.genai.values import Scalar

_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def pick(span: Span, wanted: frozenset[str]) -> dict[str, Scalar]:
    """The span's attributes whose key is in `wanted`, decoded; arrays, maps and bytes read as None."""
    attrs: dict[str, Scalar] = {}
    for kv in span.attributes:
        if kv.key in wanted:
            value = kv.value
            kind = value.WhichOneof("value")
            attrs[kv.key] = getattr(value, kind) if kind in _SCALARS else None
    return attrs


def facts(span: Span) -> SpanFacts:
    exception_type = None
    for event in span.events:
        if event.name == "exception":
            exception_type = next((kv.value.string_value for kv in event.attributes
                                   if kv.key == "exception.type" and kv.value.string_value), None)
            break
    return SpanFacts(span.name, span.status.code, exception_type)


def reference_process(proc: Any, message: ExportTraceServiceRequest) -> int:
    """`proc` (a GenAIProcessor) applied to `message` in place, span by span; attributes written."""
    sessions = BatchSessions(proc.memory, proc.fallback_priority, proc.config.session_from_trace)
    lacking: list[tuple[bytes, Span]] = []
    written = 0
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                attrs = pick(span, A.WANTED_KEYS)
                result = proc._normalise(attrs, facts(span), scope_name) if attrs or scope_name in A.AGENTS_SCOPES \
                    else None
                if result is not None:
                    encoded: list[bytes] = []
                    written += proc._apply(span.trace_id, result, sessions, encoded)
                    if encoded:
                        span.MergeFromString(b"".join(encoded))
                if result is None or A.CONVERSATION not in attrs:
                    lacking.append((span.trace_id, span))
    resolved = sessions.resolve()
    entries: dict[bytes, bytes | None] = {}
    for trace_id, span in lacking:
        if trace_id not in entries:
            entries[trace_id] = proc._session_entry(trace_id, resolved, sessions)
        entry = entries[trace_id]
        if entry is not None:
            span.MergeFromString(entry)
            written += 1
    return written
