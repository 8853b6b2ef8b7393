"""One module per trigger kind. Each detector splits its work in two:
`observe` (hot path: one cheap partial aggregation per batch over SpanColumns) and
`evaluate` (off the hot path: window evaluation over the merged partials)."""
