"""Processors: the middle of pipelines. `processors/<type>.py` holds the type named `<type>` in YAML."""
