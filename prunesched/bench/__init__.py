"""Benchmarks that write JSON: per-step latency of every cache choice and prune ratio, next to the real peers."""
