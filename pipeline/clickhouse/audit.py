"""The decisions/events audit table (`agentdbg_decisions`), shared by the `clickhouse` and `chdb` exporters.

An `events` pipeline's documents (trigger events `agentdbg.trigger/v1`, safety decisions
`agentdbg.decision/v1`) are stored one row each, the whole document kept
as JSON in `Document` and a few fields lifted out to filter on:

| column | from a decision | from a trigger event |
|---|---|---|
| `Timestamp DateTime64(9)` | `decided_at` | `emitted_at` |
| `Schema` | `schema` | `schema` |
| `Id` | `id` (the idempotency key) | `id` |
| `Kind` | `action` | `kind` |
| `Status` | `''` | `status` |
| `Target` | `target` (text, or sorted-key JSON) | `subject_key` |
| `Document` | the JSON document | the JSON document |

Limits (values a column cannot hold; the same rule as the spans tables, schema.py "Limits":
normalise at the storage boundary, every document is stored):

| column | what cannot be stored | stored instead |
|---|---|---|
| `Timestamp` DateTime64(9) | no readable RFC 3339 time, or one outside 1900-01-01 .. 2262-04-11 23:47:16.854775807 UTC | the batch's receive time; `Document` keeps the original text |
| text columns, `Document` | a lone surrogate (not UTF-8; only from a document built in Python, never from JSON) | U+FFFD in its place |
| partitions | a batch spread over more than 100 days | `max_partitions_per_insert_block` is 0 on every insert |

Engine: `ReplacingMergeTree(Timestamp)`, `PARTITION BY toDate(Timestamp)`, `ORDER BY (Kind, Id)`.
The events pipeline delivers at least once (a Kafka redelivery, a retried insert), and ids
are deterministic, so a redelivered document carries the same `Id`. ReplacingMergeTree
collapses rows whose *sorting key* is equal, so the key must contain `Id`: with
`ORDER BY (Kind, Timestamp)` two copies whose `decided_at` differs (a decision made again
after a redelivery) would both stay, and two different documents of one kind stamped in the
same nanosecond would wrongly collapse. `Kind` comes first because audit queries select by
action or trigger kind ("every rollback this week") and it is low-cardinality, so it prunes
granules and compresses well; time-range queries are served by the daily partitions and a
minmax index on `Timestamp`. The version column `Timestamp` keeps the latest copy.
Collapsing happens at background merges and only within a partition (a copy redelivered
on another UTC day stays until read): read with `FINAL` (or `argMax(Document, Timestamp)
... GROUP BY Id`) for an exact, duplicate-free answer.

Retention: `events_ttl` (default 8760h, 365 days; 0 = for ever), separate from the spans'
`ttl` (default 360h, 15 days). The audit table is the trail of who did what (safety decisions,
erasures): it must outlive the spans it talks about, and it holds a few rows a minute, so a
year costs little. Like the spans tables, a table created earlier gets it by
`ALTER TABLE ... MODIFY TTL` at each start.

Append-only: the daemon only inserts into this table (these exporters, and pipeline/audit.py's
one INSERT for operator and admin actions, `agentdbg.audit/v1`, and erasures,
`agentdbg.erasure/v1`, whose uuid ids never collapse); no statement of it updates or deletes a
row, not even `agentdbg forget` (tests/unit/test_audit_append_only.py); rows leave by the TTL.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Sequence

import orjson

from pipeline.clickhouse.schema import deduplication_statements, modify_ttl, quote, ttl_clause
from pipeline.pdata.events import Events, document_key

MIN_TIME_NS = -2_208_988_800 * 1_000_000_000  # 1900-01-01: DateTime64's first day
MAX_TIME_NS = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")

EVENTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Timestamp", "DateTime64(9)"),
    ("Schema", "LowCardinality(String)"),
    ("Id", "String"),
    ("Kind", "LowCardinality(String)"),
    ("Status", "LowCardinality(String)"),
    ("Target", "String"),
    ("Document", "String"),
)

_EVENTS_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    Schema LowCardinality(String) CODEC(ZSTD(1)),
    Id String CODEC(ZSTD(1)),
    Kind LowCardinality(String) CODEC(ZSTD(1)),
    Status LowCardinality(String) CODEC(ZSTD(1)),
    Target String CODEC(ZSTD(1)),
    Document String CODEC(ZSTD(1)),
    INDEX idx_id Id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_target Target TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_timestamp Timestamp TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree(Timestamp)
PARTITION BY toDate(Timestamp)
ORDER BY (Kind, Id)
{ttl}
SETTINGS index_granularity = 8192"""

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)")


def events_table_statements(table: str, ttl_seconds: float = 0) -> list[str]:
    """CREATE TABLE for the audit table (and its TTL's ALTER); `table` is already qualified and quoted."""
    ttl = ttl_clause(ttl_seconds, "toDateTime(Timestamp)", "Timestamp")
    return [_EVENTS_TABLE.format(table=table, ttl=ttl), *modify_ttl(table, ttl), *deduplication_statements(table)]


def bound_insert(table: str) -> str:
    """INSERT of one row of `EVENTS_COLUMNS` into `table` (qualified and quoted), each value bound
    by its column's name (`{Id:String}`; the DateTime64 time as Int64 nanoseconds since the epoch):
    the columns the exporters write, for a writer outside the events pipeline (pipeline/audit.py)."""
    names = ", ".join(quote(name) for name, _ in EVENTS_COLUMNS)
    values = ", ".join(f"fromUnixTimestamp64Nano({{{name}:Int64}})" if type_.startswith("DateTime64")
                       else f"{{{name}:String}}" for name, type_ in EVENTS_COLUMNS)
    return f"INSERT INTO {table} ({names}) SELECT {values}"


def rfc3339_ns(text: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (all fraction digits kept), or None."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    whole, fraction, offset = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if offset in ("Z", "z") else offset)).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "")[:9].ljust(9, "0"))


def _timestamp(document: dict[str, Any], fallback: int) -> int:
    found = rfc3339_ns(document.get("decided_at") or document.get("emitted_at"))
    return fallback if found is None or not MIN_TIME_NS <= found <= MAX_TIME_NS else found


def _text(value: Any) -> str:
    """`str(value)`, with any lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    text = str(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _documents(batch: Events) -> list[str]:
    try:
        return [value.decode() for value in batch.encoded()]
    except TypeError:  # orjson refuses a str that is not UTF-8: encode the documents with it replaced
        return [orjson.dumps(_utf8_tree(doc)).decode() for doc in batch.documents]


def _utf8_tree(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(key): _utf8_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utf8_tree(item) for item in value]
    return value


def _is_decision(document: dict[str, Any]) -> bool:
    return "action" in document


def events_columns(batch: Events) -> list[Sequence]:
    """The `EVENTS_COLUMNS` data of one events batch, column by column."""
    documents = batch.documents
    received = int(batch.received_at * 1_000_000_000)
    return [
        [_timestamp(doc, received) for doc in documents],
        [_text(doc.get("schema") or "") for doc in documents],
        [_text(doc.get("id") or "") for doc in documents],
        [_text(doc.get("action") if _is_decision(doc) else doc.get("kind") or "") for doc in documents],
        ["" if _is_decision(doc) else _text(doc.get("status") or "") for doc in documents],
        [_text(document_key(doc)) for doc in documents],
        _documents(batch),
    ]


def select_documents(batch: Events, indices: Sequence[int]) -> Events:
    """The documents of `batch` at `indices`, as received."""
    return Events([batch.documents[i] for i in indices], batch.received_at)
