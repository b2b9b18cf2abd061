"""Policy as a value: load, validate, lint, graph, hash."""
