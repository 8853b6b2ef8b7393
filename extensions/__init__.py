"""Extensions: components outside pipelines (health check, debug API)."""
