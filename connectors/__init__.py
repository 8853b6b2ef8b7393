"""Connectors: components that end some pipelines and start others (otelcol's model).

`connectors/<type>` holds the type named `<type>` under `connectors:` in YAML.
"""
