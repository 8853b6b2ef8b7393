"""Config of the `kafka` exporter: otelcol kafkaexporter's keys, with safe producer defaults."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from exporters.helper import ExporterHelperConfig
from pipeline.component import StrictConfig
from pipeline.config.tls import TlsClientConfig
from pipeline.config.units import ByteSize, Duration
from pipeline.partitioning import PartitionBy

Acks = Literal["all", 0, 1]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class ProducerConfig(StrictConfig):
    # Kafka's own broker default for message.max.bytes is about 1 MB; larger needs the broker raised too.
    max_message_bytes: ByteSize = Field(1_000_000, ge=1024)
    required_acks: Acks = "all"
    compression: Compression = "none"
    linger: Duration = 0.01
    enable_idempotence: bool = True

    @field_validator("required_acks", mode="before")
    @classmethod
    def _acks(cls, value: Any) -> Any:
        """Kafka spells "all" also as -1; YAML may hand numbers over as strings."""
        text = str(value).strip().lower()
        return {"all": "all", "-1": "all", "1": 1, "0": 0}.get(text, value)

    @model_validator(mode="after")
    def _idempotence_needs_all(self) -> "ProducerConfig":
        if self.enable_idempotence and self.required_acks != "all":
            raise ValueError("enable_idempotence: true needs required_acks: all "
                             "(or set enable_idempotence: false to use fewer acks)")
        return self


class SaslConfig(StrictConfig):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    username: str = Field(min_length=1)
    password: SecretStr  # kept out of logs and reprs


class LogsTopicConfig(StrictConfig):
    """Where a `logs` pipeline's records go (otelcol kafkaexporter's `logs:` block)."""

    topic: str = Field("otlp_logs", min_length=1)
    encoding: Literal["otlp_proto", "otlp_json"] | None = None  # None: the exporter's `encoding`


class KafkaConfig(ExporterHelperConfig):
    brokers: list[str] = Field(default_factory=lambda: ["localhost:9092"], min_length=1)
    topic: str = Field("otlp_spans", min_length=1)
    encoding: Literal["otlp_proto", "otlp_json"] = "otlp_proto"
    partition_traces_by_id: bool = False
    # Key family of the records (pipeline/partitioning.py): one topic per family feeds the
    # evaluator tier's detectors that key serves. `partition_traces_by_id` is `trace_id`.
    partition_by: PartitionBy | None = None
    logs: LogsTopicConfig = LogsTopicConfig()
    client_id: str = "agentdbg"
    producer: ProducerConfig = ProducerConfig()
    tls: TlsClientConfig | None = None
    sasl: SaslConfig | None = None

    @field_validator("brokers", mode="before")
    @classmethod
    def _brokers(cls, value: Any) -> Any:
        """Accept `host:port` or a comma-separated string as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("brokers")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for broker in value:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"broker {broker!r} must be host:port")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> "KafkaConfig":
        if self.partition_traces_by_id and self.partition_by not in (None, "trace_id"):
            raise ValueError(f"partition_traces_by_id: true keys records by trace id; it cannot be combined "
                             f"with partition_by: {self.partition_by} (drop one of the two)")
        return self

    @property
    def key_family(self) -> PartitionBy | None:
        """The record key family: `partition_by`, or `trace_id` for `partition_traces_by_id`."""
        return self.partition_by or ("trace_id" if self.partition_traces_by_id else None)

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None and not self.tls.insecure
