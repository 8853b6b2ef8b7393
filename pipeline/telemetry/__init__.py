"""The daemon's own telemetry: Prometheus metrics (otelcol names) and structured logs."""
