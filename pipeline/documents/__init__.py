"""Our own versioned JSON documents, one typed definition each, shared by the components
that write them and the ones that read them.

- `agentdbg.trigger/v1` (`pipeline.documents.trigger`): written by the `triggers`
  connector, read by the `safety` processor and the `kafka` receiver;
- `agentdbg.decision/v1` (`pipeline.documents.decision`): written by the `safety`
  processor, read by the `kafka` receiver (a decisions topic) and the audit table.

Documents travel as plain dicts (an `Events` batch); `validate` checks one against the
model its `schema` names and raises `InvalidDocument` with one line saying what is wrong,
so a reader can count, log and set aside a bad document instead of failing on it later.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.documents.common import InvalidDocument, stable_id
from pipeline.documents.decision import Decision
from pipeline.documents.trigger import Trigger

__all__ = ["InvalidDocument", "MODELS", "stable_id", "validate"]

MODELS: dict[str, type[BaseModel]] = {Trigger.SCHEMA: Trigger, Decision.SCHEMA: Decision}


def validate(document: Any) -> BaseModel:
    """The typed form of `document`, or `InvalidDocument` naming the first problems found."""
    if not isinstance(document, dict):
        raise InvalidDocument(f"a document is a JSON object, not {type(document).__name__}")
    schema = document.get("schema")
    model = MODELS.get(schema) if isinstance(schema, str) else None
    if model is None or not isinstance(schema, str):
        raise InvalidDocument(f"unknown schema {schema!r}; this version reads {', '.join(sorted(MODELS))}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidDocument(describe(exc, schema)) from None


def describe(exc: ValidationError, schema: str, limit: int = 3) -> str:
    """`schema: field.path: message; ...` for the first `limit` errors (one log line)."""
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}" for e in errors[:limit]]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return f"invalid {schema} document: {'; '.join(parts)}{more}"
