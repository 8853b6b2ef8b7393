"""`redaction`: mask or hash secrets and personal data before anything is stored or sent.

API keys and tokens, card numbers, IBANs (and, switched on, emails and phone numbers) in span,
event, link, scope and resource attribute values, status messages and GenAI messages inside
JSON strings; otelcol's key rules besides. This module: the batch walk over the OTLP
messages, in place (the package holds the factory and says what it promises).
"""
from __future__ import annotations

import re
import time
from collections import Counter

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.component import Consumer, Processor, Settings
from pipeline.pdata.batch import Batch
from pipeline.pdata.logs import Logs
from pipeline.pdata.traces import Traces
from pipeline.telemetry import metrics
from processors.redaction.config import RedactionConfig
from processors.redaction.locate import Hits, ResourcePlan, plan
from processors.redaction.scanner import BLOCKED_KEYS, NOT_ALLOWED, Scanner

FAILED = "failed"  # a value the scanner could not process: replaced whole, never passed on
FAILED_MASK = "[REDACTED:unprocessed]"
REDACTED_KEYS, REDACTED_COUNT = "redaction.redacted.keys", "redaction.redacted.count"
MASKED_KEYS, MASKED_COUNT = "redaction.masked.keys", "redaction.masked.count"
Attributes = RepeatedCompositeFieldContainer[KeyValue]


class RedactionProcessor(Processor[Batch]):
    def __init__(self, settings: Settings, config: RedactionConfig, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer)
        self.config = config
        self.scanner = Scanner(config)
        self.allowed = None if config.allow_all_keys else frozenset(config.allowed_keys)
        self.ignored = frozenset(config.ignored_keys)
        self.blocked_keys = _combined(config.blocked_key_patterns)
        self.replace_whole = self.scanner.whole_replacer(config.mode_of(None))
        self.key_rules = self.allowed is not None or self.blocked_keys is not None or config.summary != "silent"
        # One search over the batch's bytes finds the spans a detector can match; only sound when
        # the value detectors are all there is to do (a summary is written only where they hit;
        # removed keys and blocked keys need every attribute; integers are varints on the wire).
        every_attribute = self.allowed is not None or self.blocked_keys is not None or config.redact_all_types
        self.wire_check = None if every_attribute else self.scanner.wire_check()
        self.idle = not self.scanner.detectors and not every_attribute  # every detector switched off
        self.failures = 0
        rules = [d.name for d in self.scanner.detectors] + [BLOCKED_KEYS, NOT_ALLOWED, FAILED]
        self._cpu = metrics.redaction_cpu_seconds.labels(str(settings.id))
        self._redacted = {rule: metrics.redaction_redacted_values.labels(str(settings.id), rule) for rule in rules}

    async def consume(self, batch: Batch) -> None:
        if isinstance(batch, (Traces, Logs)):
            started = time.thread_time()
            hits = self.redact(batch) if isinstance(batch, Traces) else self.redact_logs(batch)
            self._cpu.inc(time.thread_time() - started)
            if hits:
                batch.mark_changed()  # the cached wire bytes hold the originals: never send them
                for rule, number in hits.items():
                    self._redacted[rule].inc(number)
        await self.next.consume(batch)

    def redact(self, batch: Traces) -> Counter[str]:
        """Redact every span of the batch in place; the redactions by rule (empty: untouched)."""
        hits: Counter[str] = Counter()
        if self.idle:
            return hits
        if self.wire_check is not None and batch.unchanged:
            wire = batch.wire()
            ranges = self.wire_check.ranges(wire)
            if not ranges:
                return hits
            self.process_planned(batch.message, plan(wire, Hits(ranges)), hits)
            return hits
        self.process(batch.message, hits)
        return hits

    def redact_logs(self, batch: Logs) -> Counter[str]:
        """Redact every log record of the batch in place: resource, scope and record attributes and
        the body (a string, or strings inside an array or kvlist body); the redactions by rule."""
        hits: Counter[str] = Counter()
        if self.idle or (self.wire_check is not None and batch.unchanged
                         and not self.wire_check.ranges(batch.wire())):
            return hits
        for resource_logs in batch.message.resource_logs:
            self.attributes(resource_logs.resource.attributes, hits)
            for scope_logs in resource_logs.scope_logs:
                self.attributes(scope_logs.scope.attributes, hits)
                for record in scope_logs.log_records:
                    self.attributes(record.attributes, hits)
                    self.value(record.body, hits)
        return hits

    def process(self, message: ExportTraceServiceRequest, hits: Counter[str]) -> None:
        """Walk every resource, scope and span of the message."""
        attributes = self.attributes
        for resource_spans in message.resource_spans:
            attributes(resource_spans.resource.attributes, hits)
            for scope_spans in resource_spans.scope_spans:
                attributes(scope_spans.scope.attributes, hits)
                for span in scope_spans.spans:
                    self.span(span, hits)

    def process_planned(self, message: ExportTraceServiceRequest, plans: dict[int, ResourcePlan],
                        hits: Counter[str]) -> None:
        """Walk only the resources, scopes and spans whose bytes hold a candidate match."""
        for r, resource_plan in plans.items():
            resource_spans = message.resource_spans[r]
            if resource_plan.header:
                self.attributes(resource_spans.resource.attributes, hits)
            for s, scope_plan in resource_plan.scopes.items():
                scope_spans = resource_spans.scope_spans[s]
                if scope_plan.header:
                    self.attributes(scope_spans.scope.attributes, hits)
                spans = scope_spans.spans
                for i in scope_plan.spans:
                    self.span(spans[i], hits)

    def span(self, span: Span, hits: Counter[str]) -> None:
        attributes = self.attributes
        attributes(span.attributes, hits)
        for event in span.events:  # gen_ai prompt/completion events, exceptions
            attributes(event.attributes, hits)
        for link in span.links:
            attributes(link.attributes, hits)
        message_text = span.status.message
        if message_text:
            new = self._text(message_text, hits)
            if new is not None:
                span.status.message = new

    def attributes(self, kvs: Attributes, hits: Counter[str]) -> None:
        if not self.key_rules:  # the usual case: value detectors only
            ignored = self.ignored
            for kv in kvs:
                if not ignored or kv.key not in ignored:
                    self.value(kv.value, hits)
            return
        removed: list[int] = []
        masked: list[str] = []
        for index, kv in enumerate(kvs):
            key = kv.key
            if key in self.ignored:
                continue
            if self.allowed is not None and key not in self.allowed:
                removed.append(index)
            elif self.blocked_keys is not None and self.blocked_keys.search(key):
                kv.value.string_value = self.replace_whole(_as_text(kv.value))
                hits[BLOCKED_KEYS] += 1
                masked.append(key)
            elif self.value(kv.value, hits):
                masked.append(key)
        removed_keys = [kvs[index].key for index in removed]
        for index in reversed(removed):
            del kvs[index]
        if removed:
            hits[NOT_ALLOWED] += len(removed)
        if self.config.summary != "silent":
            self._summary(kvs, removed_keys, REDACTED_KEYS, REDACTED_COUNT)
            self._summary(kvs, masked, MASKED_KEYS, MASKED_COUNT)

    def value(self, value: AnyValue, hits: Counter[str]) -> bool:
        """Redact one AnyValue in place (strings, and strings inside arrays and kvlists)."""
        kind = value.WhichOneof("value")
        if kind == "string_value":
            new = self._text(value.string_value, hits)
            if new is None:
                return False
            value.string_value = new
            return True
        if kind == "array_value":
            return sum([self.value(item, hits) for item in value.array_value.values]) > 0
        if kind == "kvlist_value":
            return sum([self.value(kv.value, hits) for kv in value.kvlist_value.values]) > 0
        if kind == "int_value" and self.config.redact_all_types:
            new = self._text(str(value.int_value), hits)
            if new is not None:
                value.string_value = new
                return True
        return False

    def _text(self, text: str, hits: Counter[str]) -> str | None:
        """The scanner's answer; if it fails, the whole value is replaced (fail closed) and the
        failure counted and logged, without the value."""
        try:
            return self.scanner.text(text, hits)
        except Exception:
            self.failures += 1
            hits[FAILED] += 1
            if self.failures == 1 or self.failures % 10_000 == 0:
                self.log.exception("a value could not be scanned; replaced whole",
                                   extra={"kv": {"failures": self.failures, "length": len(text)}})
            return FAILED_MASK

    def _summary(self, kvs: Attributes, keys: list[str], keys_attribute: str, count_attribute: str) -> None:
        """otelcol's diagnostic attributes: the count (info, debug) and the sorted keys (debug),
        added to what an earlier redaction wrote there."""
        if not keys:
            return
        existing = {kv.key: kv for kv in kvs if kv.key in (keys_attribute, count_attribute)}
        if self.config.summary == "debug":
            entry = existing.get(keys_attribute) or kvs.add(key=keys_attribute)
            previous = [k for k in entry.value.string_value.split(",") if k]
            entry.value.string_value = ",".join(sorted(previous + keys))
        entry = existing.get(count_attribute) or kvs.add(key=count_attribute)
        entry.value.int_value = entry.value.int_value + len(keys)


def _as_text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind in (None, "array_value", "kvlist_value", "bytes_value"):
        return value.SerializeToString().hex()
    return str(getattr(value, kind))


def _combined(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
