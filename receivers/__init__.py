"""Receivers: where data enters. `receivers/<type>` holds the type named `<type>` in YAML."""
