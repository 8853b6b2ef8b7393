"""Types and helpers both document kinds use."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


class InvalidDocument(ValueError):
    """A document that does not match its schema's model; the message says why, on one line."""


def stable_id(*parts: Any) -> str:
    """A deterministic 32-hex-digit id from `parts` (an idempotency key: same parts, same id)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _rfc3339(text: str) -> str:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (RFC 3339 needs Z or an offset)")
    return text


# Kept as the text it came in (documents are passed on as they are), checked on the way in.
Timestamp = Annotated[str, AfterValidator(_rfc3339)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Document(BaseModel):
    """Strict types (no string for a number, no number for a string); fields this version
    does not know are ignored, so a later compatible addition does not make a reader refuse."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
