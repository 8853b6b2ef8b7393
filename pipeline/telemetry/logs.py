"""Structured logs: one line per event, `key=value` (console) or JSON.

Pass fields with `extra={"kv": {...}}`; the component id comes from the logger name.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

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
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                               "component": _component(record), "msg": record.getMessage()}
        doc.update(getattr(record, "kv", None) or {})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


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
