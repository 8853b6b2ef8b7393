"""The one place that lists the concrete component types the daemon knows.

Factories only: the terminal commands (`query`, `sessions` ...) are not components and live in
pipeline/commands/, dispatched by pipeline/cli.py.
"""
from __future__ import annotations

from functools import cache

from pipeline.component import Factory, Kind


@cache
def factories() -> dict[Kind, dict[str, Factory]]:
    from connectors.triggers import factory as triggers
    from exporters.alertmanager import factory as alertmanager_exporter
    from exporters.chdb import factory as chdb_exporter
    from exporters.clickhouse import factory as clickhouse_exporter
    from exporters.debug import factory as debug_exporter
    from exporters.file import factory as file_exporter
    from exporters.genai_metrics import factory as genai_metrics_exporter
    from exporters.kafka import factory as kafka_exporter
    from exporters.otlp import factory as otlp_exporter
    from exporters.otlphttp import factory as otlphttp_exporter
    from exporters.webhook import factory as webhook_exporter
    from extensions.bearertokenauth import factory as bearertokenauth
    from extensions.debug_api import factory as debug_api
    from extensions.explorer import factory as explorer
    from extensions.file_storage import factory as file_storage
    from extensions.health_check import factory as health_check
    from extensions.oidc import factory as oidc
    from processors.batch import factory as batch
    from processors.drop_heartbeats import factory as drop_heartbeats
    from processors.genai import factory as genai
    from processors.memory_limiter import factory as memory_limiter
    from processors.redaction import factory as redaction
    from processors.safety import factory as safety
    from receivers.kafka import factory as kafka_receiver
    from receivers.otlp import factory as otlp_receiver
    from receivers.zipkin import factory as zipkin_receiver

    listed = [
        otlp_receiver, kafka_receiver, zipkin_receiver,
        batch, memory_limiter, safety, genai, redaction, drop_heartbeats,
        debug_exporter, file_exporter, kafka_exporter, otlp_exporter, otlphttp_exporter,
        alertmanager_exporter, webhook_exporter, clickhouse_exporter, chdb_exporter, genai_metrics_exporter,
        health_check, debug_api, explorer, bearertokenauth, oidc, file_storage,
        triggers,
    ]
    table: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}
    for factory in listed:
        table[factory.kind][factory.type] = factory
    return table

