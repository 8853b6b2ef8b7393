"""What HTTP-speaking exporters share: reading the server's retry hint and classifying status codes."""
from __future__ import annotations

import email.utils
import time

from pipeline.errors import PermanentError, RetryableError

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def raise_for_status(status: int, message: str, retry_after: str | None,
                     retryable: frozenset[int] = RETRYABLE_STATUS) -> None:
    """Nothing for 2xx; RetryableError for `retryable` codes (honouring Retry-After); else permanent."""
    if 200 <= status < 300:
        return
    if status in retryable:
        raise RetryableError(f"HTTP {status}: {message}", retry_after_seconds(retry_after),
                             error_type=f"http_{status}")
    raise PermanentError(f"HTTP {status}: {message}", error_type=f"http_{status}")
