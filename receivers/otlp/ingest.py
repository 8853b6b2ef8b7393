"""Push one decoded request into the pipeline and turn the outcome into an OTLP answer.

Shared by the gRPC and HTTP transports so both count and answer alike:
accepted → OK (with partial_success when some items were invalid); `Refused` →
UNAVAILABLE / 503, or RESOURCE_EXHAUSTED / 429 for overload, both with a retry hint;
`PermanentError` → INVALID_ARGUMENT / 400. Any other exception from a stage is a bug or a
poison value the stage did not foresee: it is logged with its traceback and counted as
refused, and the client gets UNAVAILABLE / 503 with a retry hint (as otelcol treats an error
that is not marked permanent), never a 500 or a dropped connection. Error messages sent
back, and logged, are cut to `MAX_MESSAGE` characters: a client's 1 MiB span name or id
must not come back in every answer.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from google.protobuf.message import Message
from google.rpc import code_pb2

from pipeline.component import ComponentID, Consumer
from pipeline.errors import PermanentError, Refused
from pipeline.telemetry import metrics
from pipeline.telemetry.logs import RateLimit
from receivers.otlp.signals import SignalSpec

MAX_MESSAGE = 512

HTTP_STATUS = {
    code_pb2.OK: 200,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.NOT_FOUND: 404,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.UNIMPLEMENTED: 404,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.INTERNAL: 500,
}


@dataclass
class Outcome:
    code: int = code_pb2.OK
    message: str = ""
    retry_after: float | None = None
    rejected: int = 0
    too_large: bool = False

    def __post_init__(self) -> None:
        self.message = clip(self.message)

    @property
    def http_status(self) -> int:
        return 413 if self.too_large else HTTP_STATUS.get(self.code, 500)

    @classmethod
    def bad_request(cls, message: str) -> "Outcome":
        return cls(code_pb2.INVALID_ARGUMENT, message)

    @classmethod
    def unauthenticated(cls, reason: str = "missing or invalid bearer token") -> "Outcome":
        return cls(code_pb2.UNAUTHENTICATED, f"unauthenticated: {reason}")

    @classmethod
    def payload_too_large(cls, message: str) -> "Outcome":
        return cls(code_pb2.RESOURCE_EXHAUSTED, message, too_large=True)


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text`, cut to `limit` characters with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class Ingest:
    """One signal of one transport. A rejected request is always counted
    (`agentdbg_receiver_rejected_requests_total{reason}`) but logged at most once per
    `LOG_INTERVAL` seconds per reason, with how many were held back since: a client sending
    garbage in a loop must not flood the log."""

    LOG_INTERVAL = 10.0

    def __init__(self, receiver: ComponentID, transport: str, spec: SignalSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.log = logging.getLogger(f"agentdbg.receiver.{receiver}")
        labels = (str(receiver), transport)
        accepted, refused, failed = spec.counters
        self.accepted = accepted.labels(*labels)
        self.refused = refused.labels(*labels)
        self.failed = failed.labels(*labels)
        self._rejected_requests = {
            reason: metrics.receiver_rejected_requests.labels(*labels, reason)
            for reason in ("malformed", "too_large", "unsupported", "no_pipeline", "unauthenticated")}
        self._log_limits = {reason: RateLimit(self.LOG_INTERVAL, clock) for reason in self._rejected_requests}

    def reject_request(self, reason: str, outcome: Outcome) -> Outcome:
        self._rejected_requests[reason].inc()
        held_back = self._log_limits[reason].allow()
        if held_back is not None:
            self.log.warning("request rejected", extra={"kv": {
                "reason": reason, "error": outcome.message, "held_back": held_back,
                "per_s": self.LOG_INTERVAL}})
        return outcome

    async def push(self, consumer: Consumer | None, message: Message, wire: bytes | None,
                   refused: tuple[int, str] = (0, "")) -> Outcome:
        """`refused`: items already left out while decoding (SignalSpec.parse), and why."""
        received_at = time.time()
        if consumer is None:
            return self.reject_request("no_pipeline", Outcome(
                code_pb2.UNIMPLEMENTED, f"no pipeline takes {self.spec.signal.value} from this receiver"))
        rejected, reason = self.spec.drop_invalid(message)
        rejected, reason = rejected + refused[0], reason or refused[1]
        if rejected:
            wire = None
            self.failed.inc(rejected)
        batch = self.spec.make_batch(message, wire, received_at)
        count = batch.item_count
        if count:
            try:
                await consumer.consume(batch)
            except Refused as exc:
                self.refused.inc(count)
                code = code_pb2.RESOURCE_EXHAUSTED if exc.overload else code_pb2.UNAVAILABLE
                return Outcome(code, str(exc), retry_after=exc.retry_after)
            except PermanentError as exc:
                self.failed.inc(count)
                return Outcome.bad_request(str(exc))
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                self.refused.inc(count)
                self.log.error("a pipeline stage failed on a request; answered as retryable", exc_info=True,
                               extra={"kv": {"spans": count, "error": clip(repr(exc))}})
                return Outcome(code_pb2.UNAVAILABLE, f"the pipeline failed on the request: {exc!r}",
                               retry_after=1.0)
            self.accepted.inc(count)
        if rejected:
            return Outcome(rejected=rejected, message=reason)
        return Outcome()
