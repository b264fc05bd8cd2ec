"""The engine node: HTTP API, job store, encrypted blob vault, workers and security."""
