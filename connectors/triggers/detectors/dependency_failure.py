"""dependency_failure: more than `max_timeouts` (3) timed-out calls to one external target in `window` (60 s).

What counts: CLIENT spans only. The target is the span's `peer.service`, else
`server.address`, else `gen_ai.provider.name`. A call timed out when any of:
`error.type` mentions a timeout (case-insensitive `timeout`, `timed out`, `deadline
exceeded` — so `Timeout`, `TimeoutError`, `ReadTimeout`, `DEADLINE_EXCEEDED` ...); the
HTTP status (`http.response.status_code`, old `http.status_code`) is 408 or 504; the gRPC
status (`rpc.grpc.status_code`) is 4 (DEADLINE_EXCEEDED); the span status message
mentions a timeout; or an `exception` event's `exception.type` or `exception.message`
mentions one. Only spans in error status or with an `error.type` are examined (HTTP and
gRPC client instrumentations set the error status on 408/504 and DEADLINE_EXCEEDED), so a
healthy batch costs two C-speed scans of its columns; only `error.type` is read for
every span (from the shared attribute pass), the other attributes from the failed CLIENT
spans themselves.

Subject: `dependency` and the calling `service` (`per_service: false` counts every
caller together, subject `dependency` only). `observed` is the number of timed-out calls
in the window, unit `count`; it fires above `max_timeouts` (per-subject `overrides`).
Severity critical. Examples are the timed-out spans.

Bounded state: at most `max_subjects` (5,000) (caller, dependency) pairs in the window; a new
pair past that is not counted until one leaves the window
(`agentdbg_trigger_state_evictions_total{reason="subject_untracked"}`). Examples are kept only
for pairs in the window.
"""
from __future__ import annotations

import re
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span
from pydantic import NonNegativeInt

from connectors.triggers.checkpoint_state import Part, examples_part
from connectors.triggers.columnar import positions
from connectors.triggers.detectors.base import BoundedConfig, Detector, Severity
from connectors.triggers.event import Examples, Observation
from connectors.triggers.windows import SlidingSums
from pipeline.config.units import Duration
from pipeline.pdata.anyvalue import any_value_text
from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

CLIENT = 3
STATUS_ERROR = 2
TIMEOUT_TEXT = re.compile(r"time[ds]?[\s_-]?out|deadline[\s_-]?exceeded", re.IGNORECASE)
TIMEOUT_CODES = ("408", "504")  # attribute values as text
GRPC_DEADLINE_EXCEEDED = ("4", "DEADLINE_EXCEEDED")
TARGET_KEYS = ("peer.service", "server.address", "gen_ai.provider.name")
CODE_KEYS = ("http.response.status_code", "http.status_code", "rpc.grpc.status_code")
READ_KEYS = frozenset(TARGET_KEYS + CODE_KEYS)


class DependencyFailureConfig(BoundedConfig):
    severity: Severity = "critical"
    max_timeouts: NonNegativeInt = 3
    window: Duration = 60.0
    per_service: bool = True


class DependencyFailureDetector(Detector[DependencyFailureConfig]):
    kind = "dependency_failure"
    attribute_keys = ("error.type",)

    def __init__(self, config: DependencyFailureConfig) -> None:
        super().__init__(config)
        self.timeouts: SlidingSums[tuple[str, str]] = SlidingSums(
            config.window, bucket=max(config.window / 60, 0.05), width=1)
        self.examples: dict[tuple[str, str], Examples] = {}

    def state_parts(self) -> dict[str, Part]:
        return {"timeouts": self.timeouts, "examples": examples_part(self.examples)}

    # -- hot path --------------------------------------------------------------------------------
    def observe(self, batch: Traces) -> None:
        cols = batch.columns
        kinds = cols.kind
        if CLIENT not in kinds:
            return
        suspects = self._suspects(cols)
        if not suspects:
            return
        partial: dict[tuple[str, str], int] = {}
        spans, error_types = cols.spans, cols.attribute_rows("error.type")
        for i in suspects:
            if kinds[i] != CLIENT:
                continue
            found = {kv.key: kv.value for kv in spans[i].attributes if kv.key in READ_KEYS}
            if not self._timed_out(cols, i, error_types.get(i), found):
                continue
            target = next((any_value_text(found[k]) for k in TARGET_KEYS if k in found), "")
            if not target:
                continue
            key = (cols.service[i] if self.config.per_service else "", target)
            if key not in partial and not self.admit(self.timeouts.totals, key, pending=len(partial)):
                continue
            partial[key] = partial.get(key, 0) + 1
            self.examples.setdefault(key, Examples()).add(cols.trace_id[i], cols.span_id[i])
        for key, count in partial.items():
            self.timeouts.add(batch.received_at, key, (count,))

    @staticmethod
    def _suspects(cols: SpanColumns) -> list[int]:
        """Indices of spans in error or with an `error.type`: a C scan of the status codes and the
        spans the shared attribute pass saw with `error.type`. HTTP and gRPC client
        instrumentations mark 408/504 and DEADLINE_EXCEEDED responses as errors, so no
        status-code scan is needed here."""
        failed = positions(cols.status_code, STATUS_ERROR)
        typed = cols.attribute_rows("error.type")
        if not typed:
            return failed
        return sorted(set(failed).union(typed))

    @staticmethod
    def _timed_out(cols: SpanColumns, i: int, error_type: Any, found: dict[str, Any]) -> bool:
        if error_type is not None and TIMEOUT_TEXT.search(str(error_type)):
            return True
        codes = {key: any_value_text(value) for key, value in found.items() if key in CODE_KEYS}
        if codes.get("http.response.status_code") in TIMEOUT_CODES or codes.get("http.status_code") in TIMEOUT_CODES:
            return True
        if codes.get("rpc.grpc.status_code") in GRPC_DEADLINE_EXCEEDED:
            return True
        if cols.status_code[i] != STATUS_ERROR:
            return False
        if TIMEOUT_TEXT.search(cols.status_message[i]):
            return True
        return DependencyFailureDetector._exception_timed_out(cols.spans[i])

    @staticmethod
    def _exception_timed_out(span: Span) -> bool:
        for event in span.events:
            if event.name != "exception":
                continue
            for kv in event.attributes:
                if kv.key in ("exception.type", "exception.message") and TIMEOUT_TEXT.search(
                        any_value_text(kv.value)):
                    return True
        return False

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Observation]:
        self.timeouts.expire(now)
        window = self.timeouts.span(now)
        for key in [k for k in self.examples if k not in self.timeouts.totals]:
            del self.examples[key]
        out = []
        for (service, target), (count,) in self.timeouts.totals.items():
            subject = {"service": service, "dependency": target} if service else {"dependency": target}
            threshold = self.threshold_for(subject, self.config.max_timeouts)
            caller = f"{service} → " if service else ""
            out.append(Observation(
                self.kind, subject, count, threshold, "count", window, self.config.severity,
                f"{caller}{target}: {count:g} calls timed out in the last {self.config.window:g}s "
                f"(more than {threshold:g} fires)", self.examples.get((service, target), Examples())))
        return out
