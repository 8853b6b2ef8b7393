"""Errors that flow back up a pipeline and say whether the sender may retry.

Receivers map them to protocol answers: `Refused` → gRPC UNAVAILABLE / HTTP 503 (or
RESOURCE_EXHAUSTED / 429 when `overload`), always with a retry hint; `PermanentError` →
INVALID_ARGUMENT / 400 and is never retried.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.component import Consumer


class RetryableError(Exception):
    """A failure that may succeed later; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None, error_type: str = "unavailable") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.error_type = error_type


class Refused(RetryableError):
    """A stage refused the data (queue full, memory limit); nothing of the batch was kept by it.

    `retry_consumer`, when set, is the part of a fan-out that refused: a caller that keeps the
    batch (the batch processor) retries only there, so the exporters that took it see it once.
    A refusal always carries a retry hint (`retry_after`, seconds).
    """

    retry_after: float

    def __init__(
        self,
        message: str,
        retry_after: float = 1.0,
        overload: bool = False,
        retry_consumer: Consumer | None = None,
        error_type: str = "refused",
    ) -> None:
        super().__init__(message, retry_after, error_type)
        self.overload = overload
        self.retry_consumer: Consumer | None = retry_consumer


class PermanentError(Exception):
    """A failure that will not succeed on retry (bad data, too large, not authorised)."""

    def __init__(self, message: str, error_type: str = "permanent") -> None:
        super().__init__(message)
        self.error_type = error_type


class InvalidData(PermanentError):
    """The destination refused values in some rows of the batch (not the request itself).

    Sending the same rows again fails the same way, but the other rows of the batch can be
    stored: an exporter that inserts rows isolates the offending ones (exporters/helper/isolate.py)
    and counts them under `invalid_data`. `code` is the destination's own name for the error.
    """

    def __init__(self, message: str, code: str = "invalid_data") -> None:
        super().__init__(message, error_type="invalid_data")
        self.code = code


@dataclass(frozen=True)
class PartialFailure:
    """What an exporter's `send` returns when the destination took all but `rejected` items.

    Those items are counted as failed under `error_type` and logged with `reason`, never
    retried (OTLP partial_success; a Kafka span too large for any message).
    """

    rejected: int
    error_type: str = "partial_success"
    reason: str = "the destination rejected part of the batch"


class ConfigErrors(Exception):
    """Every problem found in a configuration, each prefixed with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
