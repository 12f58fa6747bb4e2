"""torch.compile before or after apply: the compiled pipeline gives the uncompiled patched output, compiles once per
kind of step, and remove restores the unpatched output. The eager backend runs dynamo's tracing and guards without
inductor's minutes of code generation."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.models.tiny import tiny_sd_pipeline
from tests.runtime.helpers import generate, two_level_unet

SCHEDULE = Schedule(steps=tuple(StepPlan(s) for s in ("full", 0, "reuse", 0, "full", 0, "reuse")))
"""Full steps, cache steps and reuse steps: one graph for a full step with empty caches, one with full caches, one for branch 0."""


class CountingEager:
    """The eager backend, counting the graphs dynamo hands it and the calls of them."""

    def __init__(self) -> None:
        self.graphs = 0
        self.calls = 0

    def __call__(self, graph: torch.fx.GraphModule, _inputs: list) -> object:
        self.graphs += 1

        def run(*args: object) -> object:
            self.calls += 1
            return graph.forward(*args)

        return run

    def count(self, run) -> tuple[int, int]:
        """The graphs compiled and the graph calls made while ``run()`` runs."""
        graphs, calls = self.graphs, self.calls
        run()
        return self.graphs - graphs, self.calls - calls


@pytest.fixture(scope="module")
def compiling():
    """A pipeline of its own (compiling leaves traces behind) with a UNet dynamo traces fast, its unpatched and
    patched uncompiled outputs, and one counting backend for all tests, so that each reuses the graphs of those before."""
    torch._dynamo.reset()
    pipe = StableDiffusionPipeline(**{**tiny_sd_pipeline().components, "unet": two_level_unet()})
    pipe.set_progress_bar_config(disable=True)
    reference = generate(pipe)
    with prunesched.apply(pipe, SCHEDULE):
        patched = generate(pipe)
    assert not np.array_equal(reference, patched)
    yield pipe, reference, patched, CountingEager()
    torch._dynamo.reset()


@pytest.fixture
def uncompiled_after(compiling):
    """The pipeline of :func:`compiling`, uncompiled and unpatched again after the test."""
    pipe = compiling[0]
    unet = pipe.unet
    yield compiling
    prunesched.remove(pipe)
    pipe.unet = unet
    vars(unet).pop("_compiled_call_impl", None)


def test_compile_then_apply_compiles_each_kind_of_step_once(uncompiled_after):
    pipe, reference, patched, backend = uncompiled_after
    unet = pipe.unet
    pipe.unet = torch.compile(pipe.unet, backend=backend)
    handle = prunesched.apply(pipe, SCHEDULE)
    images: list[np.ndarray] = []
    assert backend.count(lambda: images.append(generate(pipe))) == (3, 5), "a graph per kind of step (empty caches at the first)"
    assert [r.performed for r in handle.records] == ["full", 0, "reuse", 0, "full", 0, "reuse"]
    assert backend.count(lambda: images.append(generate(pipe))) == (0, 5), "a second generation compiles nothing"
    assert np.array_equal(images[0], patched) and np.array_equal(images[1], patched)
    prunesched.remove(pipe)
    assert backend.count(lambda: images.append(generate(pipe))) == (1, 7)
    assert np.array_equal(images[2], reference)
    assert "forward" not in vars(unet)


@pytest.mark.parametrize("order", ["unet.compile(), then apply", "apply, then torch.compile"])
def test_the_other_orders_give_the_uncompiled_outputs(uncompiled_after, order):
    pipe, reference, patched, backend = uncompiled_after
    unet = pipe.unet
    if order == "unet.compile(), then apply":
        pipe.unet.compile(backend=backend)
        prunesched.apply(pipe, SCHEDULE)
    else:
        prunesched.apply(pipe, SCHEDULE)
        pipe.unet = torch.compile(pipe.unet, backend=backend)
    images: list[np.ndarray] = []
    _, calls = backend.count(lambda: images.append(generate(pipe)))
    assert calls == 5, "each UNet call that computes runs one compiled graph, with no graph break"
    prunesched.remove(pipe)
    _, calls = backend.count(lambda: images.append(generate(pipe)))
    assert calls == 7
    assert np.array_equal(images[0], patched) and np.array_equal(images[1], reference)
    assert "forward" not in vars(unet)


FORECAST = Schedule(steps=tuple(StepPlan(*s) for s in (("full",), (0,), ("full",), (0, 0, 1), ("reuse", 0, 2), (0, 0, 2), ("full",))))
"""Cache and reuse steps that extrapolate: the loop positions are tensors, so one graph serves every step of a kind."""


def test_forecast_steps_compile_without_graph_breaks_and_give_the_uncompiled_output(uncompiled_after):
    pipe, _reference, _patched, backend = uncompiled_after
    with prunesched.apply(pipe, FORECAST):
        eager = generate(pipe)
    pipe.unet = torch.compile(pipe.unet, backend=backend)
    handle = prunesched.apply(pipe, FORECAST)
    images: list[np.ndarray] = []
    _, calls = backend.count(lambda: images.append(generate(pipe)))
    assert calls == 6, "each UNet call that computes runs one compiled graph, with no graph break"
    assert [r.forecast for r in handle.records] == [0, 0, 0, 1, 1, 1, 0]
    assert backend.count(lambda: images.append(generate(pipe))) == (0, 6), "a second generation compiles nothing"
    assert np.array_equal(images[0], eager) and np.array_equal(images[1], eager)
