"""SutazAI Agent Debugger: the pipeline core (config, component contract, graph, telemetry, CLI).

Nothing in this package imports a concrete component except `pipeline.registry`.
"""
