"""`partition_by`: the Kafka record key of each span, per key family of the detectors.

A collector tier publishes the detectors' input keyed so that every key's spans land in one
partition, hence in one evaluator of the consumer group (docs/scaling.md). Kafka's default
partitioner hashes the record key, so equal keys always share a partition. One family per
topic; each family keeps only the spans its detectors read:

| family | key | spans published | detectors it serves |
|---|---|---|---|
| `trace_id` | trace id (hex) | all | deadlock |
| `session` | `gen_ai.conversation.id`, else the trace id | all | infinite_loop (tool calls) |
| `service` | `service.name` | all | error_rate_spike, performance_degradation, context_overflow, health_snapshot |
| `service_dependency` | service, then the dependency | CLIENT spans naming a dependency | dependency_failure |
| `budget_owner` | `service.name` | spans that carry a cost | cost_budget |

The keys follow the detectors' subjects (each detector's docstring says its subject): the
session is what infinite_loop calls a session, the dependency the first of `peer.service`,
`server.address`, `gen_ai.provider.name` that dependency_failure reads (tests/unit keeps the
two lists equal). A span a family does not keep has no key and is not sent to that topic;
it is not a failure, its family's detectors would ignore it. `budget_owner` keys by service:
a per-agent budget is exact for an agent that runs in one service (an agent spread across
services is judged per partition; docs/scaling.md#limits).

The evaluator side (`subject_key_of`, `partition_of`): a kafka receiver told its topic's
family (`key_family`) tells the stateful connector it feeds which subjects its assigned
partitions hold, so their checkpointed state is restored where their spans now go. A subject
is placed by the record key its spans were published under; one that no record key names (an
agent's spend or latency, a session) is not moved (docs/scaling.md#limits).
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import eq
from typing import Any, Callable, Literal, Mapping

from aiokafka.partitioner import murmur2

from pipeline.pdata.spans import SpanColumns

PartitionBy = Literal["trace_id", "session", "service", "service_dependency", "budget_owner"]
Keys = list[bytes | None]  # per span of the batch, in column order; None: not for this topic

CLIENT = 3
SESSION_KEY = "gen_ai.conversation.id"
DEPENDENCY_KEYS = ("peer.service", "server.address", "gen_ai.provider.name")
COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total")
_SEPARATOR = "\x1f"  # between the parts of a composite key: never in a service name


def by_trace(cols: SpanColumns) -> Keys:
    return [trace_id.hex().encode() for trace_id in cols.trace_id]


def by_session(cols: SpanColumns) -> Keys:
    sessions = cols.attribute_rows(SESSION_KEY)
    return [str(sessions[i]).encode() if sessions.get(i) else trace_id.hex().encode()
            for i, trace_id in enumerate(cols.trace_id)]


def by_service(cols: SpanColumns) -> Keys:
    return [service.encode() for service in cols.service]


def by_dependency(cols: SpanColumns) -> Keys:
    keys: Keys = [None] * len(cols)
    clients = list(compress(range(len(cols)), map(eq, cols.kind, repeat(CLIENT))))
    if not clients:
        return keys
    columns = list(cols.attributes(DEPENDENCY_KEYS).values())  # one pass for the three keys
    services = cols.service
    for i in clients:
        target = next((value for column in columns if (value := column[i]) not in (None, "")), None)
        if target is not None:
            keys[i] = f"{services[i]}{_SEPARATOR}{_text(target)}".encode()
    return keys


def _text(value: Any) -> str:
    """An attribute's text as the detectors read it (any_value_text): booleans in lower case."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def by_budget_owner(cols: SpanColumns) -> Keys:
    keys: Keys = [None] * len(cols)
    for key in COST_KEYS:
        for i in cols.attribute_rows(key):
            keys[i] = cols.service[i].encode()
    return keys


KEYS: dict[str, Callable[[SpanColumns], Keys]] = {
    "trace_id": by_trace,
    "session": by_session,
    "service": by_service,
    "service_dependency": by_dependency,
    "budget_owner": by_budget_owner,
}


def subject_key_of(family: PartitionBy, subject: Mapping[str, Any]) -> bytes | None:
    """The record key under which the spans of a detector's `subject` were published, or None
    when no single record key holds them all."""
    service = subject.get("service")
    if family in ("service", "budget_owner"):
        return str(service).encode() if service is not None else None  # an agent's subject: none
    if family == "service_dependency":
        dependency = subject.get("dependency")
        return f"{service}{_SEPARATOR}{dependency}".encode() if service and dependency else None
    if family == "session":
        session = subject.get("session")
        return str(session).encode() if session else None
    return None  # trace_id: no detector subject names a trace


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's) sends `key` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
