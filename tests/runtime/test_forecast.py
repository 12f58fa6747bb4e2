"""Forecast steps: the extrapolation itself, and on tiny UNet and DiT pipelines that a forecast step adds exactly the
extrapolation of the features its cache recorded (captured with hooks), falls back to a lower order while too few
full steps have run, and leaves order-0 steps bit-identical."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.models.tiny import tiny_flux_pipeline, tiny_sd3_pipeline, tiny_sd_controlnet_pipeline
from prunesched.runtime.dit_layout import dit_blocks
from prunesched.runtime.forecast import extrapolate, recall, remember
from tests.runtime import helpers
from tests.runtime.helpers import generate


def schedule(*plans: str | int | tuple[str | int, int]) -> Schedule:
    """A schedule of ``plans``: a cache choice, or ``(cache, forecast order)``."""
    return Schedule(steps=tuple(StepPlan(p[0], forecast=p[1]) if isinstance(p, tuple) else StepPlan(p) for p in plans))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_extrapolation_is_exact_for_lines_and_parabolas_on_uneven_gaps():
    line = [(x, torch.tensor([2.0 - 3.0 * x, 0.5 * x], dtype=torch.float64)) for x in (1.0, 4.0)]
    assert torch.allclose(extrapolate(line, 6.0), torch.tensor([-16.0, 3.0], dtype=torch.float64))
    xs = (0.0, 1.0, 3.0)
    parabola = [(x, torch.tensor(1.0 - 2.0 * x + 0.75 * x * x, dtype=torch.float64)) for x in xs]
    assert torch.allclose(extrapolate(parabola, 4.0), torch.tensor(1.0 - 8.0 + 12.0, dtype=torch.float64))
    assert not torch.allclose(extrapolate(parabola[1:], 4.0), torch.tensor(5.0, dtype=torch.float64)), "a line misses a parabola"
    tensors = [(torch.tensor(x), (torch.full((2,), 3.0 * x), (torch.tensor([x]), None))) for x in (2.0, 5.0)]
    image, (skip, text) = extrapolate(tensors, torch.tensor(7.0))  # 0-d tensor positions; tuples and Nones as modules return them
    assert close(image, torch.full((2,), 21.0)) and close(skip, torch.tensor([7.0])) and text is None


def test_points_keep_the_last_values_and_order_0_returns_the_last_one_itself():
    points = None
    for x in range(4):
        points = remember(points, float(x), torch.tensor(float(x * x)), keep=3)
    assert [x for x, _ in points] == [1.0, 2.0, 3.0]
    assert recall(points, 4.0, 0) is points[-1][1]
    assert recall(points, 4.0, 1) == 3 * 3 + (9 - 4) and recall(points, 4.0, 2) == 16
    assert len(remember(points, 4.0, torch.tensor(0.0), keep=1)) == 1


def captured(module: torch.nn.Module, run: Any) -> list[Any]:
    """The outputs ``module`` returned (computed, copied or extrapolated) while ``run()`` ran, in call order."""
    outputs: list[Any] = []
    hook = module.register_forward_hook(lambda _m, _a, output: outputs.append(output))
    try:
        run()
    finally:
        hook.remove()
    return outputs


def test_a_unet_forecast_step_extrapolates_the_deepcache_features_it_skips(sd_pipe):
    """``up_blocks.0`` is frozen at branch 0; it computes at the full iterations 0, 2 and 6. At iteration 3 and 4 a
    first-order step extrapolates it through iterations 0 and 2 (uneven gaps to the step); the order-0 steps copy it."""
    plans = ("full", 0, "full", (0, 1), (0, 1), 0, "full")
    with prunesched.apply(sd_pipe, schedule(*plans)) as handle:
        out = captured(sd_pipe.unet.up_blocks[0], lambda: generate(sd_pipe))
        forecast = generate(sd_pipe)
    assert [r.performed for r in handle.records] == ["full", 0, "full", 0, 0, 0, "full"]
    assert [r.forecast for r in handle.records] == [0, 0, 0, 1, 1, 0, 0]
    assert torch.equal(out[1], out[0]) and torch.equal(out[5], out[2])
    assert close(out[3], out[2] + (out[2] - out[0]) * (3 - 2) / (2 - 0)) and close(out[4], out[2] + (out[2] - out[0]) * (4 - 2) / 2)
    with prunesched.apply(sd_pipe, schedule(*(p[0] if isinstance(p, tuple) else p for p in plans))):
        copied = generate(sd_pipe)
    assert not np.array_equal(forecast, copied)


def test_too_few_full_steps_lower_the_order_and_the_record_says_so(sd_pipe):
    plans = ("full", (0, 2), (0, 2), "full", (0, 2), (0, 1), "full")
    with prunesched.apply(sd_pipe, schedule(*plans)) as handle:
        out = captured(sd_pipe.unet.up_blocks[0], lambda: generate(sd_pipe))
    assert [r.forecast for r in handle.records] == [0, 0, 0, 0, 1, 1, 0]
    assert torch.equal(out[1], out[0]) and close(out[4], out[3] + (out[3] - out[0]) / 3)


def test_order_0_steps_are_bit_identical_when_the_schedule_keeps_more_values(sd_pipe):
    """A forecast step makes every cache keep 3 values instead of 1; the steps before it must not change by a bit."""
    latents: dict[str, list[torch.Tensor]] = {"copy": [], "forecast": []}
    for name, last in (("copy", 0), ("forecast", (0, 2))):

        def callback(_pipe: Any, _i: int, _t: Any, kwargs: dict, name: str = name) -> dict:
            latents[name].append(kwargs["latents"].clone())
            return kwargs

        with prunesched.apply(sd_pipe, schedule("full", 0, "full", 0, "full", 0, last)):
            generate(sd_pipe, callback_on_step_end=callback)
    assert all(torch.equal(a, b) for a, b in zip(latents["copy"][:6], latents["forecast"][:6]))
    assert not torch.equal(latents["copy"][6], latents["forecast"][6])


def test_a_reuse_forecast_extrapolates_the_network_output(sd_pipe):
    """Reuse steps extrapolate the output of the last computed calls (a cache step's too): iteration 2 through 0 and 1;
    iteration 4 asks for order 2 but has had two full steps, so it runs at order 1 through iterations 1 and 3."""
    plans = ("full", "full", ("reuse", 1), 0, ("reuse", 2), "full", "reuse")
    with prunesched.apply(sd_pipe, schedule(*plans)) as handle:
        out = [o[0] for o in captured(sd_pipe.unet, lambda: generate(sd_pipe))]
    assert [r.performed for r in handle.records] == ["full", "full", "reuse", 0, "reuse", "full", "reuse"]
    assert [r.forecast for r in handle.records] == [0, 0, 1, 0, 1, 0, 0]
    assert close(out[2], 2 * out[1] - out[0]) and close(out[4], out[3] + (out[3] - out[1]) / 2)
    assert torch.equal(out[6], out[5])


DIT_STEPS = 6
FLUX_OPTIONS = {"max_sequence_length": 16}
DIT_CASES = {
    "sd3": (lambda: tiny_sd3_pipeline(layers=5), {}),
    "flux": (lambda: tiny_flux_pipeline(layers=(2, 3)), FLUX_OPTIONS),
    "flux, true CFG": (lambda: tiny_flux_pipeline(layers=(2, 3)), {**FLUX_OPTIONS, "negative_prompt": "x", "true_cfg_scale": 2.0}),
}


@pytest.mark.parametrize("case", sorted(DIT_CASES))
def test_a_dit_forecast_step_adds_the_extrapolated_residual_of_each_guidance_stream(case):
    """Depth 0 computes the first and last of the 5 blocks; the cached span is blocks 1-3, whose residual (output of 3
    minus input of 1) is recorded at the full iterations 0, 1 and 3. Each stream (Flux's true CFG calls twice per step)
    adds its own residual: at iteration 2 extrapolated through 0 and 1, at 4 through 1 and 3, at 5 copied."""
    build, options = DIT_CASES[case]
    pipe = build()
    blocks = [block for _name, block in dit_blocks(pipe.transformer)]
    inputs: dict[int, list[torch.Tensor]] = {1: [], 3: []}
    outputs: list[torch.Tensor] = []
    hooks = [
        blocks[i].register_forward_pre_hook(lambda _m, _a, kwargs, i=i: inputs[i].append(kwargs["hidden_states"]), with_kwargs=True)
        for i in inputs
    ]
    hooks.append(blocks[3].register_forward_hook(lambda _m, _a, output: outputs.append(output[1])))  # (text, image)
    plans = ("full", "full", (0, 1), "full", (0, 1), 0)
    try:
        with prunesched.apply(pipe, schedule(*plans)) as handle:
            image = helpers.generate(pipe, DIT_STEPS, **options)
    finally:
        for hook in hooks:
            hook.remove()
    streams = handle.records[0].denoiser_calls
    assert streams == (2 if "true_cfg_scale" in options else 1)
    assert [r.forecast for r in handle.records] == [0, 0, 1, 0, 1, 0]
    for stream in range(streams):
        span_in, block_3_in, block_3_out = inputs[1][stream::streams], inputs[3][stream::streams], outputs[stream::streams]
        residual = {i: block_3_out[i] - span_in[i] for i in (0, 1, 3)}
        assert close(block_3_out[2], block_3_in[2] + residual[1] + (residual[1] - residual[0]))
        assert close(block_3_out[4], block_3_in[4] + residual[3] + (residual[3] - residual[1]) / 2)
        assert close(block_3_out[5], block_3_in[5] + residual[3])
    with prunesched.apply(pipe, schedule(*(p[0] if isinstance(p, tuple) else p for p in plans))):
        assert not np.array_equal(image, helpers.generate(pipe, DIT_STEPS, **options))


def test_a_controlnet_pipeline_forecasts_the_unets_features_and_copies_the_controlnets():
    """The ControlNet's skipped modules feed only residuals a cache step does not read: they keep one output, not three."""
    pipe = tiny_sd_controlnet_pipeline()
    control = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with prunesched.apply(pipe, schedule("full", "full", (0, 2), "full", (0, 2), (0, 1), 0)) as handle:
        forecast = generate(pipe, image=control)
        kept = {key: len(points) for key, points in handle._state.caches[0].items() if isinstance(points, list)}
    assert [r.forecast for r in handle.records] == [0, 0, 1, 0, 2, 1, 0]
    assert {n for key, n in kept.items() if key.startswith("controlnet.")} == {1}
    assert {n for key, n in kept.items() if not key.startswith("controlnet.")} == {3}
    with prunesched.apply(pipe, schedule("full", "full", 0, "full", 0, 0, 0)):
        assert not np.array_equal(forecast, generate(pipe, image=control))
