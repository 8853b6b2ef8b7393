"""The exporter helper every exporter builds on: bounded sending queue, consumers, retry, timeout."""
from exporters.helper.queued import QueuedExporter
from exporters.helper.settings import ExporterHelperConfig, QueueSettings, RetrySettings

__all__ = ["ExporterHelperConfig", "QueueSettings", "RetrySettings", "QueuedExporter"]
