"""Exporters: the ends of pipelines. `exporters/<type>.py` holds the type named `<type>` in YAML."""
