"""Shared fixtures: tiny pipelines built from configs (random weights, no downloads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import prunesched
from prunesched.models.tiny import tiny_sd_pipeline, tiny_sdxl_pipeline


@pytest.fixture(scope="session")
def _sd_pipe():
    return tiny_sd_pipeline()


@pytest.fixture(scope="session")
def _sdxl_pipe():
    return tiny_sdxl_pipeline()


@pytest.fixture
def sd_pipe(_sd_pipe) -> Iterator:
    """The tiny SD-1.x pipeline, unpatched and with its original scheduler after the test."""
    scheduler = _sd_pipe.scheduler
    yield _sd_pipe
    prunesched.remove(_sd_pipe)
    _sd_pipe.scheduler = scheduler


@pytest.fixture
def sdxl_pipe(_sdxl_pipe) -> Iterator:
    """The tiny SDXL pipeline, unpatched after the test."""
    yield _sdxl_pipe
    prunesched.remove(_sdxl_pipe)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the whole session (starting one costs seconds); actors use num_cpus=0."""
    import ray

    from prunesched.search.dispatch import ensure_ray

    ensure_ray(None)
    yield
    ray.shutdown()
