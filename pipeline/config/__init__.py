"""Configuration: YAML loading, env expansion, merging, unit types and validation."""
