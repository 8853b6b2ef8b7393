"""Structured logs: one line per event, `key=value` (console) or JSON.

Pass fields with `extra={"kv": {...}}`; the component id comes from the logger name.
Every line, ours or a library's, has the credentials of the URLs in it masked (`redact`).
`ServerLog` is what our aiohttp servers log through: a request that is not HTTP/1.x at all
(a gRPC client aimed at the HTTP port, TLS to a plaintext port, a port scanner) is one
warning line per `interval` naming the endpoint and how many more were held back, never a
traceback; an error inside a request handler stays an error with its traceback.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

import orjson

from pipeline.telemetry.redact import redact_text

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _component(record: logging.LogRecord) -> str:
    if not record.name.startswith("agentdbg"):
        return f"lib.{record.name}"
    return record.name.removeprefix("agentdbg.").removeprefix("agentdbg")


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"level={record.levelname.lower()}"]
        if component := _component(record):
            parts.append(f"component={component}")
        parts.append(f"msg={_quote(record.getMessage())}")
        for key, value in (getattr(record, "kv", None) or {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return redact_text(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                               "component": _component(record), "msg": record.getMessage()}
        doc.update(getattr(record, "kv", None) or {})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return redact_text(orjson.dumps(doc, default=str).decode())


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def setup(level: str = "info", encoding: str = "console") -> None:
    """Our loggers at `level`; libraries' (aiokafka, grpc, aiohttp) at warning, in the same format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if encoding == "json" else ConsoleFormatter())
    ours = logging.getLogger("agentdbg")
    ours.handlers[:] = [handler]
    ours.setLevel(_LEVELS[level])
    ours.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, _LEVELS[level]))


class RateLimit:
    """At most one event per `interval` seconds; counts the ones it held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = float("-inf")
        self.held_back = 0

    def allow(self) -> int | None:
        """None when this event is held back; else how many were held back before it."""
        now = self.clock()
        if now < self._next:
            self.held_back += 1
            return None
        self._next = now + self.interval
        held, self.held_back = self.held_back, 0
        return held


class Throttled:
    """A logger's repeated lines, each kind (`key`, else the message) at most once per `interval`
    seconds, with `held_back` (how many of that kind were left out since) and `per_s`: an
    outage or a client in a loop must not flood the log; the metrics still count every event."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._limits: dict[str, RateLimit] = {}

    def warning(self, msg: str, kv: dict[str, Any] | None = None, key: str | None = None, **kwargs: Any) -> bool:
        """Log `msg` with `kv` unless held back; whether it was logged."""
        limit = self._limits.get(key or msg)
        if limit is None:
            limit = self._limits[key or msg] = RateLimit(self.interval, self.clock)
        held_back = limit.allow()
        if held_back is None:
            return False
        self.logger.warning(msg, extra={"kv": {**(kv or {}), "held_back": held_back, "per_s": self.interval}},
                            **kwargs)
        return True


def _protocol_error(exc_info: Any) -> BaseException | None:
    """The exception when it is the peer's malformed request (not our handler's bug)."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
    return exc if isinstance(exc, HttpProcessingError) else None


class ServerLog(logging.LoggerAdapter):
    """aiohttp's server logger for one endpoint of ours (pass as `AppRunner(logger=...)`)."""

    def __init__(self, logger: logging.Logger, endpoint: str, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logger, {})
        self.endpoint = endpoint
        self.limit = RateLimit(interval, clock)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = _protocol_error(exc_info)
        if exc is None:
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)
            return
        held_back = self.limit.allow()
        if held_back is None:
            return
        self.logger.warning("a request that is not valid HTTP/1.x was refused (a gRPC client aimed at an "
                            "HTTP port, or TLS to a plaintext one?)", extra={"kv": {
                                "endpoint": self.endpoint, "error": _first_line(exc),
                                "held_back": held_back, "per_s": self.limit.interval}})


def _first_line(exc: BaseException) -> str:
    """aiohttp's parser errors span lines (the bad bytes, a caret): keep the message's first."""
    lines = [line.strip() for line in str(getattr(exc, "message", "") or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
