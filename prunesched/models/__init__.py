"""Diffusers models built from configs in code: tiny test pipelines and the real architectures for benchmarks.

No weights are downloaded; every model here is built locally.
"""
