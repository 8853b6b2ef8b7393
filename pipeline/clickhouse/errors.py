"""Which ClickHouse failures are worth retrying, shared by the `clickhouse` and `chdb` exporters.

Bad rows (`InvalidData`, counted under `invalid_data`): the engine refused values in the
data — it cannot parse them, a value does not fit its column or breaks a table constraint,
a string or array is too large — or clickhouse-connect's serializer could not encode them
(its `DataError: Unable to create native array ...`, a string that is not UTF-8), which
happens before anything reaches the engine. Sending the same rows again would fail the
same way, but the other rows of the batch can be stored: the exporters isolate the bad
rows by bisection (exporters/helper/isolate.py) and dead-letter them.

Bad statement (`PermanentError`, counted under the ClickHouse error name): the insert
itself is wrong for the table — an unknown column, a column count or type that does not
match the table's, a syntax error, an unknown setting or format. No row would go in, so
the whole batch is refused (and dead-lettered) without bisecting.

Retryable (`RetryableError`, backed off and retried by the exporter helper): everything
else, as otelcol does — connection refused or reset, timeouts, overload
(`TOO_MANY_PARTS`, `MEMORY_LIMIT_EXCEEDED`, `TOO_MANY_SIMULTANEOUS_QUERIES`, HTTP 503),
a missing table or database, authentication: these can be fixed on the server side
while the batch waits in the queue (until `retry_on_failure.max_elapsed_time`).
"""
from __future__ import annotations

import logging
import re
import struct

from pipeline.errors import InvalidData, PermanentError, RetryableError

BAD_ROWS: frozenset[str] = frozenset({
    "CANNOT_PARSE_TEXT", "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_UUID",
    "CANNOT_PARSE_BOOL", "CANNOT_READ_ALL_DATA", "ATTEMPT_TO_READ_AFTER_EOF", "INCORRECT_DATA",
    "CANNOT_CONVERT_TYPE", "SIZES_OF_ARRAYS_DONT_MATCH", "SIZES_OF_NESTED_COLUMNS_ARE_INCONSISTENT",
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", "DECIMAL_OVERFLOW", "ARGUMENT_OUT_OF_BOUND", "TOO_LARGE_STRING_SIZE",
    "TOO_LARGE_ARRAY_SIZE", "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", "VIOLATED_CONSTRAINT",
})
BAD_STATEMENT: frozenset[str] = frozenset({
    "TYPE_MISMATCH", "ILLEGAL_TYPE_OF_ARGUMENT", "ILLEGAL_COLUMN", "NO_SUCH_COLUMN_IN_TABLE", "THERE_IS_NO_COLUMN",
    "NOT_FOUND_COLUMN_IN_BLOCK", "INCORRECT_NUMBER_OF_COLUMNS", "NUMBER_OF_COLUMNS_DOESNT_MATCH", "UNKNOWN_FORMAT",
    "INCORRECT_QUERY", "SYNTAX_ERROR", "BAD_ARGUMENTS", "UNKNOWN_SETTING",
})
BAD_DATA: frozenset[str] = BAD_ROWS | BAD_STATEMENT
# What clickhouse-connect's serializer raises for values it cannot encode (before the engine sees them).
SERIALIZER_ERRORS: tuple[type[BaseException], ...] = (UnicodeError, OverflowError, struct.error)
# The serializer also logs each refusal with a traceback at ERROR, before raising it. The exporters
# report it themselves, once per batch (bisecting a batch meets the same bad value several times).
for _name in ("clickhouse_connect.driver.transform", "clickhouse_connect.driver.rustcodec"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)
# Codes for the names above and a few retryable ones, for errors that carry only the number.
CODE_NAMES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT", 7: "INCORRECT_NUMBER_OF_COLUMNS", 8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK", 16: "NO_SUCH_COLUMN_IN_TABLE", 26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED", 32: "ATTEMPT_TO_READ_AFTER_EOF", 33: "CANNOT_READ_ALL_DATA",
    36: "BAD_ARGUMENTS", 38: "CANNOT_PARSE_DATE", 41: "CANNOT_PARSE_DATETIME", 43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN", 53: "TYPE_MISMATCH", 60: "UNKNOWN_TABLE", 62: "SYNTAX_ERROR", 69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE", 72: "CANNOT_PARSE_NUMBER", 73: "UNKNOWN_FORMAT", 80: "INCORRECT_QUERY",
    81: "UNKNOWN_DATABASE", 115: "UNKNOWN_SETTING", 117: "INCORRECT_DATA", 128: "TOO_LARGE_ARRAY_SIZE",
    131: "TOO_LARGE_STRING_SIZE", 159: "TIMEOUT_EXCEEDED", 190: "SIZES_OF_ARRAYS_DONT_MATCH",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES", 209: "SOCKET_TIMEOUT", 210: "NETWORK_ERROR",
    241: "MEMORY_LIMIT_EXCEEDED", 252: "TOO_MANY_PARTS", 321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", 407: "DECIMAL_OVERFLOW", 469: "VIOLATED_CONSTRAINT",
    516: "AUTHENTICATION_FAILED",
}
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_CODE = re.compile(r"\bCode:\s*(\d+)")
_HTTP_STATUS = re.compile(r"HTTP status (\d{3})")


def error_name(exc: BaseException) -> str | None:
    """The ClickHouse error name (`TOO_MANY_PARTS`) of an exception, from its fields or text."""
    name = getattr(exc, "name", None)
    if isinstance(name, str) and name:
        return name
    text = str(exc)
    names = _NAME.findall(text)
    if names:
        return names[-1]
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        match = _CODE.search(text)
        code = int(match.group(1)) if match else None
    return CODE_NAMES.get(code, f"CODE_{code}") if code is not None else None


def classify(exc: BaseException, what: str = "insert") -> PermanentError | RetryableError:
    """The pipeline error for a failed ClickHouse call (raise it `from exc`)."""
    if serializer_refused(exc):
        return InvalidData(f"cannot encode the rows for ClickHouse: {_short(exc)}", "serializer")
    name = error_name(exc)
    message = f"ClickHouse {what} failed: {_short(exc)}"
    if name in BAD_ROWS:
        return InvalidData(message, name or "invalid_data")
    if name in BAD_STATEMENT:
        return PermanentError(message, error_type=name or "bad_data")
    status = _HTTP_STATUS.search(str(exc))
    if name is None and status:
        name = f"HTTP_{status.group(1)}"
    return RetryableError(message, error_type=name or type(exc).__name__)


def serializer_refused(exc: BaseException) -> bool:
    """True for clickhouse-connect's client-side refusal of values (`DataError`) or an encoding error."""
    from clickhouse_connect.driver.exceptions import DataError

    return isinstance(exc, (DataError, *SERIALIZER_ERRORS))


def _short(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
