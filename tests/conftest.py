"""Shared fixtures: tiny pipelines built from configs (random weights, no downloads), a stand-in Inception weight file."""

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


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A stand-in for torch-fidelity's Inception weight file (random weights; the real file cannot be downloaded here).

    The code path is the real one: a local file through ``feature_extractor_weights_path``, 2048-d
    features, FID and KID; only the numbers differ from published FIDs.
    """
    from prunesched.bench.evaluation import write_standin_inception

    path = tmp_path_factory.mktemp("weights") / "inception-standin.pth"
    write_standin_inception(path)
    return str(path)
