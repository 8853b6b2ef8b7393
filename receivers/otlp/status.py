"""Build the OTLP answers: ExportXServiceResponse (with partial_success) and google.rpc.Status."""
from __future__ import annotations

import math
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.any_pb2 import Any as AnyMessage
from google.rpc import error_details_pb2, status_pb2

from receivers.otlp.ingest import Outcome
from receivers.otlp.signals import SignalSpec


def retry_seconds(outcome: Outcome) -> int:
    """Whole seconds for Retry-After / RetryInfo (at least 1)."""
    return max(1, math.ceil(outcome.retry_after or 1))


def status_of(outcome: Outcome) -> status_pb2.Status:
    status = status_pb2.Status(code=outcome.code, message=outcome.message)
    if outcome.retry_after is not None:
        detail = AnyMessage()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_seconds(outcome))))
        status.details.append(detail)
    return status


def response_of(spec: SignalSpec, outcome: Outcome) -> Any:
    response = spec.response_type()
    if outcome.rejected:
        setattr(response.partial_success, spec.partial_field, outcome.rejected)
        response.partial_success.error_message = outcome.message
    return response
