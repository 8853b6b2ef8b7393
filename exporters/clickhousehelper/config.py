"""The config keys the `clickhouse` and `chdb` exporters share: where the tables are and whether to create them."""
from __future__ import annotations

from exporters.helper import ExporterHelperConfig
from pipeline.clickhouse.tables import TableLocation
from pipeline.config.units import Duration


class TablesConfig(TableLocation, ExporterHelperConfig):
    """The keys both exporters share: where the tables are (TableLocation, the explorer's too),
    their retention, and whether to create them."""

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
