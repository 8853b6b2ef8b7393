"""The exporter helper every exporter builds on: bounded sending queue, consumers, retry, timeout."""
from exporters.helper.settings import ExporterHelperConfig, QueueSettings, RetrySettings
from exporters.helper.queued import QueuedExporter

__all__ = ["ExporterHelperConfig", "QueueSettings", "RetrySettings", "QueuedExporter"]
