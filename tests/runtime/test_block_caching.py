"""Block caching on tiny SD3, PixArt-Σ and Flux pipelines built from configs (random weights, offline)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import FluxImg2ImgPipeline, SD3ControlNetModel, StableDiffusion3ControlNetPipeline

import prunesched
from prunesched import BlockCache, CatConfig, Schedule, ScheduleError, StepPlan, UnsupportedModelError
from prunesched.models.tiny import tiny_flux_pipeline, tiny_pixart_pipeline, tiny_sd3_pipeline, tiny_sd_pipeline
from prunesched.runtime.dit_layout import dit_blocks
from tests.runtime import helpers
from tests.runtime.helpers import dit_inputs

STEPS = 6
BUILDERS = {
    "sd3": lambda: tiny_sd3_pipeline(layers=5),
    "pixart": lambda: tiny_pixart_pipeline(layers=5),
    "flux": lambda: tiny_flux_pipeline(layers=(2, 3)),
}
EXTRA: dict[str, dict[str, Any]] = {
    "sd3": {},
    "pixart": {"use_resolution_binning": False, "clean_caption": False},
    "flux": {"max_sequence_length": 16},
}
CACHES: list[int | BlockCache] = [0, 1, BlockCache(1, 0), BlockCache(0, 2), BlockCache(3, 1)]
"""Every DiT here has 5 blocks (Flux: 2 double- and 3 single-stream), so depths 0 and 1 and these spans are valid."""


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def dit(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, BUILDERS[request.param]()


def generate(kind: str, pipe: Any, **kwargs: Any) -> Any:
    """The fixed-seed generation of the runtime tests, with what each pipeline needs to run at this size."""
    return helpers.generate(pipe, STEPS, **EXTRA[kind], **kwargs)


def alternating(cache: int | BlockCache | str, prune: float = 0.0) -> Schedule:
    """Full steps at even iterations, ``cache`` at odd ones."""
    return Schedule(steps=tuple(StepPlan("full" if i % 2 == 0 else cache, prune) for i in range(STEPS)), method=CatConfig())


def direct_calls(kind: str, pipe: Any, schedule: Schedule, streams: list[dict[str, Any]]) -> tuple[list[list[torch.Tensor]], Any]:
    """Call the transformer once per stream at every iteration of ``schedule``, on the same inputs each time."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(len(schedule))
    timestep = scheduler.timesteps[0].expand(streams[0]["hidden_states"].shape[0])
    outputs: list[list[torch.Tensor]] = []
    with prunesched.apply(pipe, schedule) as handle, torch.no_grad():
        for _ in range(len(schedule)):
            outputs.append([pipe.transformer(timestep=timestep, **inputs).sample for inputs in streams])
            latents = streams[0]["hidden_states"]
            scheduler.step(outputs[-1][0][:, : latents.shape[1]], scheduler.timesteps[0], latents)  # PixArt also predicts variance
    return outputs, handle


def test_all_full_is_bit_identical_and_remove_restores_it(dit):
    kind, pipe = dit
    before = generate(kind, pipe)
    with prunesched.apply(pipe, Schedule.uniform(STEPS)):
        assert (generate(kind, pipe) == before).all()
    handle = prunesched.apply(pipe, alternating(0))
    cached = generate(kind, pipe)
    handle.remove()
    assert not (cached == before).all()
    assert (generate(kind, pipe) == before).all()


def test_every_depth_changes_the_output_and_is_recorded_per_step(dit):
    kind, pipe = dit
    before = generate(kind, pipe)
    images = []
    for cache in CACHES:
        with prunesched.apply(pipe, alternating(cache)) as handle:
            images.append(generate(kind, pipe))
        assert [r.performed for r in handle.records] == ["full", cache] * (STEPS // 2)
        assert not any(r.cache_missing for r in handle.records)
    for i, image in enumerate(images):
        assert not (image == before).all()
        assert all(not (image == other).all() for other in images[i + 1 :])


def test_a_block_cache_step_runs_only_its_first_and_last_blocks(dit):
    kind, pipe = dit
    ran: list[list[int]] = []
    attentions = [getattr(block, "attn1", None) or block.attn for _name, block in dit_blocks(pipe.transformer)]
    handles = [attention.register_forward_pre_hook(lambda *_a, i=i: ran[-1].append(i)) for i, attention in enumerate(attentions)]
    handles.append(pipe.transformer.register_forward_pre_hook(lambda *_a: ran.append([])))  # one list per call
    steps = tuple(StepPlan(plan) for cache in CACHES for plan in ("full", cache))
    try:
        direct_calls(kind, pipe, Schedule(steps=steps, method=CatConfig()), [dit_inputs(kind, pipe)])
    finally:
        for handle in handles:
            handle.remove()
    for cache, full, cached in zip(CACHES, ran[::2], ran[1::2]):
        spec = BlockCache.of(cache)
        assert full == [*range(5)] and cached == [*range(spec.first), *range(5 - spec.last, 5)]


@pytest.mark.parametrize(("kind", "prune"), [(kind, 0.0) for kind in sorted(BUILDERS)] + [("sd3", 0.6), ("pixart", 0.6)])
def test_a_block_cache_step_on_unchanged_inputs_reproduces_the_full_step(kind, prune):
    """The cached blocks add the residual they produced at the full step: on the same inputs that is exactly their
    output, so the step must equal the full one. With CAT pruning (SD3, PixArt-Σ) the residual is taken at the
    recomputed tokens, and a pruned full step refreshes only theirs; a misaligned gather or scatter would break this."""
    pipe = BUILDERS[kind]()
    plans = ["full", "full", "full", BlockCache(2, 1), "full", 0]  # CAT prunes from the third step on
    schedule = Schedule(steps=tuple(StepPlan(c, prune if i >= 2 else 0.0) for i, c in enumerate(plans)), method=CatConfig())
    outputs, handle = direct_calls(kind, pipe, schedule, [dit_inputs(kind, pipe)])
    assert [r.performed for r in handle.records] == plans
    assert bool(handle.records[3].tokens) == bool(prune)
    for output in outputs[1:]:
        assert torch.allclose(output[0], outputs[0][0], atol=1e-5)


def test_each_guidance_stream_keeps_its_own_cache():
    """Flux with true CFG calls the transformer twice per step (prompt, then negative prompt): each call must add the
    residual of its own stream, or the cached step of one would carry the other's text."""
    pipe = BUILDERS["flux"]()
    first = dit_inputs("flux", pipe)
    second = {**first, "encoder_hidden_states": torch.randn_like(first["encoder_hidden_states"])}
    outputs, handle = direct_calls("flux", pipe, alternating(BlockCache(1, 1)), [first, second])
    assert [r.denoiser_calls for r in handle.records] == [2] * STEPS
    assert not torch.allclose(outputs[0][0], outputs[0][1], atol=1e-3)
    for step in outputs[1:]:
        assert torch.allclose(step[0], outputs[0][0], atol=1e-5) and torch.allclose(step[1], outputs[0][1], atol=1e-5)


def test_flux_true_cfg_and_img2img_run_block_cache_schedules():
    pipe = BUILDERS["flux"]()
    with prunesched.apply(pipe, alternating(0)) as handle:
        generate("flux", pipe, negative_prompt="noise", true_cfg_scale=2.0)
    assert [r.denoiser_calls for r in handle.records] == [2] * STEPS
    img2img = FluxImg2ImgPipeline(**pipe.components)
    image = torch.rand(1, 3, 32, 32)
    before = generate("flux", img2img, image=image, strength=0.5)
    with prunesched.apply(img2img, alternating(0)) as handle:
        cached = generate("flux", img2img, image=image, strength=0.5)
    assert [(r.index, r.performed) for r in handle.records] == [(3, "full"), (4, "full"), (5, 0)]  # the tail runs
    assert handle.records[0].cache_missing and not (cached == before).all()


def test_a_step_that_caches_no_block_is_refused_naming_the_valid_spans(dit):
    _kind, pipe = dit
    with pytest.raises(ScheduleError, match=r"step 1: .* of this transformer's 5 blocks .* first \+ last <= 4, integer depths 0 to 1"):
        prunesched.apply(pipe, alternating(BlockCache(3, 2)))
    with pytest.raises(ScheduleError, match="integer depths 0 to 1"):
        prunesched.apply(pipe, alternating(2))
    assert not hasattr(pipe.transformer, "_prunesched_handle")


def test_block_caches_are_refused_on_a_unet_and_cat_pruning_on_flux():
    with pytest.raises(ScheduleError, match="step 1: cache F1B1 is a DiT block cache"):
        prunesched.apply(tiny_sd_pipeline(), alternating(BlockCache(1, 1)))
    with pytest.raises(ScheduleError, match="on Flux use block-cache and reuse steps without pruning"):
        prunesched.apply(BUILDERS["flux"](), Schedule.cat(STEPS, t0=2))


def test_skip_layer_guidance_that_skips_a_boundary_block_computes_that_call_in_full():
    """SD3's skip-layer guidance adds a call that skips some blocks, from the second step on: where it skipped the block
    a cached span starts at, that call has no residual to add and runs its blocks, and the step record says a cache was
    missing (at step 1 the call has no full step of its own yet)."""
    pipe = BUILDERS["sd3"]()
    schedule = alternating(BlockCache(2, 1))  # caches blocks 2 and 3; the skip-layer call never runs block 2
    options = {"skip_guidance_layers": [2], "skip_layer_guidance_start": 0.0, "skip_layer_guidance_stop": 1.0}
    with prunesched.apply(pipe, schedule) as handle:
        generate("sd3", pipe, **options)
    assert [r.denoiser_calls for r in handle.records] == [1] + [2] * (STEPS - 1)
    assert [r.cache_missing for r in handle.records] == [False, True] * (STEPS // 2)


def test_block_caches_are_refused_on_a_dit_controlnet_pipeline():
    base = BUILDERS["sd3"]()
    controlnet = SD3ControlNetModel.from_transformer(base.transformer, num_layers=1)
    pipe = StableDiffusion3ControlNetPipeline(**base.components, controlnet=controlnet)
    with pytest.raises(UnsupportedModelError, match="block-cache steps do not run StableDiffusion3ControlNetPipeline"):
        prunesched.apply(pipe, alternating(0))
    with prunesched.apply(pipe, alternating("reuse")):  # whole steps leave the ControlNet's residuals where they belong
        pass
