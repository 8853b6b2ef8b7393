"""The config keys the `clickhouse` and `chdb` exporters share: where the tables are and whether to create them."""
from __future__ import annotations

from pydantic import field_validator

from exporters.helper import ExporterHelperConfig
from pipeline.config.units import Duration


class TablesConfig(ExporterHelperConfig):
    """The keys both exporters share: where the tables are and whether to create them."""

    database: str = "otel"
    traces_table_name: str = "otel_traces"
    events_table_name: str = "agentdbg_decisions"
    # Retention of the spans table and its trace-id lookup table: rows older than this are
    # dropped by the engine (whole daily parts). 360h = 15 days, the product's Prometheus
    # retention; 0 = keep for ever. Applied to a table created earlier too (ALTER ... MODIFY TTL).
    ttl: Duration = 360 * 3600.0
    # Retention of the audit table (trigger events, safety decisions, erasures): longer than the
    # spans by default (8760h = 365 days), because an audit trail must outlive the data it is
    # about (who erased what, which breaker opened when) and its rows are few; 0 = for ever.
    events_ttl: Duration = 8760 * 3600.0
    create_schema: bool = True
    # Where rows the engine refuses for good are kept (exporters/helper/dead_letter.py), in a
    # subdirectory per exporter id; "" = the exporter's default (beside its data).
    dead_letter: str = ""

    @field_validator("database", "traces_table_name", "events_table_name")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value
