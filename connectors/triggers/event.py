"""Builders of the trigger event `agentdbg.trigger/v1`; its typed definition (fields, subject
keys, ids) is `pipeline.documents.trigger`, shared with the readers.

`Observation` is what a detector reports about one subject at one evaluation; the episode
tracker turns observations into firing / resolved documents built here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.documents.common import stable_id
from pipeline.documents.trigger import MAX_EXAMPLES, SCHEMA, subject_key, trigger_id
from pipeline.pdata.events import rfc3339

__all__ = ["MAX_EXAMPLES", "SCHEMA", "Examples", "Observation", "document", "stable_id",
           "subject_key"]


@dataclass
class Examples:
    """At most MAX_EXAMPLES recent (trace id, span id) pairs, written as lowercase hex.

    Kept as given (the raw id bytes of SpanColumns) and turned into hex only when a document
    is built: detectors add examples on the hot path, documents are rare."""

    pairs: list[tuple[bytes | str, bytes | str]] = field(default_factory=list)

    def add(self, trace_id: bytes | str, span_id: bytes | str) -> None:
        pair = (trace_id, span_id)
        pairs = self.pairs
        if pair not in pairs:
            pairs.append(pair)
            if len(pairs) > MAX_EXAMPLES:
                del pairs[0]

    def document(self) -> dict[str, list[str]]:
        pairs = [(_hex(t), _hex(s)) for t, s in self.pairs]
        return {"trace_ids": list(dict.fromkeys(t for t, _ in pairs)),
                "span_ids": [s for _, s in pairs if s]}


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


@dataclass
class Observation:
    kind: str
    subject: dict[str, Any]
    observed: float
    threshold: float
    unit: str
    window: tuple[float, float]
    severity: str = "warning"
    message: str = ""
    examples: Examples = field(default_factory=Examples)
    # None: the tracker decides (observed > threshold fires; below clear_below clears).
    firing: bool | None = None
    clear_below: float | None = None
    metrics: dict[str, Any] | None = None  # health_snapshot only
    # Tells apart several episodes of one subject (cost: `daily@0.8`, `monthly@1`, `burn`).
    qualifier: str = ""
    # Overrides the tracker's resolve_after for this observation (cost: 0 at period rollover).
    resolve_after: float | None = None

    @property
    def key(self) -> str:
        key = f"{self.kind}|{subject_key(self.subject)}"
        return f"{key}|{self.qualifier}" if self.qualifier else key


def document(obs: Observation, status: str, episode: str, first_seen: float, last_seen: float,
             now: float, detector: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "id": trigger_id(episode, status),
        "episode": episode,
        "kind": obs.kind,
        "status": status,
        "severity": obs.severity if status != "resolved" else "info",
        "subject": obs.subject,
        "subject_key": subject_key(obs.subject),
        "observed": obs.observed,
        "threshold": obs.threshold,
        "unit": obs.unit,
        "window": {"start": rfc3339(obs.window[0]), "end": rfc3339(obs.window[1])},
        "first_seen": rfc3339(first_seen),
        "last_seen": rfc3339(last_seen),
        "emitted_at": rfc3339(now),
        "examples": obs.examples.document(),
        "message": obs.message,
        "detector": detector,
    }
    if obs.metrics is not None:
        doc["metrics"] = obs.metrics
    return doc
