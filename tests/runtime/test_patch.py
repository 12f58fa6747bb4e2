"""apply/remove on tiny SD-1.x and SDXL pipelines: exactness, pruning counts, instrumentation, errors."""

import numpy as np
import pytest
import torch

import prunesched
from prunesched import Schedule, ScheduleError, StepPlan, UnsupportedModelError
from prunesched.models.tiny import tiny_sd_pipeline
from prunesched.runtime import similarity_pruning
from prunesched.runtime.methods import DatoConfig, RandomConfig, SitoConfig
from tests.runtime.helpers import generate

STEPS = 6  # PNDM: 7 loop iterations; Euler (SDXL): 6


def _loop_length(pipe, steps=STEPS):
    pipe.scheduler.set_timesteps(steps)
    return len(pipe.scheduler.timesteps)


@pytest.mark.parametrize("which", ["sd_pipe", "sdxl_pipe"])
def test_all_full_unpruned_schedule_is_bit_identical(which, request):
    pipe = request.getfixturevalue(which)
    reference = generate(pipe)
    with prunesched.apply(pipe, Schedule.uniform(_loop_length(pipe))) as handle:
        patched = generate(pipe)
        assert [r.performed for r in handle.records] == ["full"] * _loop_length(pipe)
    assert np.array_equal(reference, patched)


@pytest.mark.parametrize("which", ["sd_pipe", "sdxl_pipe"])
def test_remove_restores_bit_identical_outputs(which, request):
    pipe = request.getfixturevalue(which)
    reference = generate(pipe)
    schedule = Schedule.deepcache(_loop_length(pipe), interval=2, branch=0, prune=0.5, method="dato")
    prunesched.apply(pipe, schedule)
    changed = generate(pipe)
    prunesched.remove(pipe)
    assert not np.array_equal(reference, changed)
    assert np.array_equal(reference, generate(pipe))
    assert "forward" not in vars(pipe.unet)
    assert "step" not in vars(pipe.scheduler) and "set_timesteps" not in vars(pipe.scheduler)


def test_apply_twice_replaces_and_never_stacks(sd_pipe):
    reference = generate(sd_pipe)
    n = _loop_length(sd_pipe)
    prunesched.apply(sd_pipe, Schedule.uniform(n, prune=0.5))
    second = prunesched.apply(sd_pipe, Schedule.uniform(n, cache=0, prune=0.3))
    generate(sd_pipe)
    assert [r.prune for r in second.records] == [0.3] * n
    prunesched.remove(sd_pipe)
    assert np.array_equal(reference, generate(sd_pipe))


@pytest.mark.parametrize("method", [SitoConfig(), DatoConfig(), DatoConfig.upstream(), RandomConfig()])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (32, 48), (40, 24)])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_exactly_n_minus_int_rn_tokens_enter_self_attention(sd_pipe, method, height, width, ratio):
    n_loop = _loop_length(sd_pipe)
    handle = prunesched.apply(sd_pipe, Schedule.uniform(n_loop, prune=ratio, method=method))
    queries, outputs = {}, {}
    hooks = []
    for s in handle.slots:  # what the projections inside attention see, and what the block gets back
        hooks.append(
            s.block.attn1.to_q.register_forward_pre_hook(lambda m, a, name=s.name: queries.setdefault(name, []).append(a[0].shape[1]))
        )
        hooks.append(s.block.attn1.register_forward_hook(lambda m, i, out, name=s.name: outputs.setdefault(name, []).append(out.shape[1])))
    generate(sd_pipe, height=height, width=width)
    for hook in hooks:
        hook.remove()
    n = (height // 2) * (width // 2)  # VAE factor 2, highest-resolution level is the latent itself
    assert len(handle.slots) == 5
    for record in handle.records:
        assert record.tokens == {s.name: (n - int(ratio * n), n) for s in handle.slots}
    assert set(queries) == set(outputs) == {s.name for s in handle.slots}
    for name in queries:
        assert len(queries[name]) == n_loop and set(queries[name]) == {n - int(ratio * n)}, f"{name}: tokens attended"
        assert set(outputs[name]) == {n}, f"{name}: the recovered sequence has N tokens"


def test_sdxl_prunes_the_first_level_that_has_attention(sdxl_pipe):
    handle = prunesched.apply(sdxl_pipe, Schedule.uniform(_loop_length(sdxl_pipe), prune=0.5))
    assert {s.name.split(".attentions")[0] for s in handle.slots} == {"down_blocks.1", "up_blocks.1"}
    assert len(handle.slots) == 10  # two transformer layers per attention block
    generate(sdxl_pipe, height=32, width=48)
    n = 8 * 12  # latent 16x24, one downsample
    assert all(r.tokens == {s.name: (n - int(0.5 * n), n) for s in handle.slots} for r in handle.records)


def test_explicit_slots_and_all_slots(sd_pipe):
    n = _loop_length(sd_pipe)
    name = "up_blocks.1.attentions.0.transformer_blocks.0"
    handle = prunesched.apply(sd_pipe, Schedule(steps=(StepPlan("full", 0.5),) * n, slots=(name,)))
    generate(sd_pipe)
    assert handle.records[0].tokens == {name: (32, 64)}  # level 1 of a 16x16 latent: 8x8 tokens
    handle = prunesched.apply(sd_pipe, Schedule(steps=(StepPlan("full", 0.5),) * n, slots="all"))
    assert len(handle.slots) == 11  # 2 + 2 down, 1 mid, 3 + 3 up


def test_no_cfg_and_odd_batches_work(sd_pipe):
    n = _loop_length(sd_pipe)
    handle = prunesched.apply(sd_pipe, Schedule.uniform(n, prune=0.5, method="dato"))
    images = generate(sd_pipe, guidance_scale=1.0, num_images_per_prompt=3)
    assert images.shape[0] == 3 and np.isfinite(images).all()
    assert len(handle.records) == n
    images = generate(sd_pipe, guidance_scale=7.5, num_images_per_prompt=3)
    assert images.shape[0] == 3 and np.isfinite(images).all()


def test_cfg_alignment_follows_the_pipeline(sd_pipe, monkeypatch):
    seen = []
    original = similarity_pruning.dato_plan
    monkeypatch.setattr(similarity_pruning, "dato_plan", lambda *a, **k: seen.append(k["align_from"]) or original(*a, **k))
    prunesched.apply(sd_pipe, Schedule.uniform(_loop_length(sd_pipe), prune=0.5, method="dato"))
    generate(sd_pipe, guidance_scale=7.5)
    assert seen and set(seen) == {"second"}, "diffusers batches [uncond, cond]; the paper aligns to the conditional half"
    seen.clear()
    generate(sd_pipe, guidance_scale=1.0)
    assert seen and set(seen) == {None}
    seen.clear()
    prunesched.apply(sd_pipe, Schedule.uniform(_loop_length(sd_pipe), prune=0.5, method=DatoConfig.upstream()))
    generate(sd_pipe, guidance_scale=7.5)
    assert set(seen) == {"first"}


@pytest.mark.parametrize("source", ["up_block", "model_output"])
def test_dato_diffscore_needs_two_computed_steps_and_skips_reuse(sd_pipe, monkeypatch, source):
    diffs = []
    original = similarity_pruning.dato_plan
    monkeypatch.setattr(similarity_pruning, "dato_plan", lambda x, g, k, diff, **kw: diffs.append(diff) or original(x, g, k, diff, **kw))
    steps = (StepPlan("full", 0.5), StepPlan("full", 0.5), StepPlan("reuse", 0.5)) + (StepPlan("full", 0.5),) * (_loop_length(sd_pipe) - 3)
    handle = prunesched.apply(sd_pipe, Schedule(steps=steps, method=DatoConfig(diff_source=source)))
    generate(sd_pipe)
    per_step = [diffs[i * 5] for i in range(len(diffs) // 5)]  # 5 slots per computed step
    assert per_step[0] is None and per_step[1] is None, "no DiffScore before two computed steps"
    assert all(d is not None and d.shape == (2, 256) for d in per_step[2:])
    assert [r.performed for r in handle.records][:3] == ["full", "full", "reuse"]
    assert not torch.equal(per_step[2], torch.zeros_like(per_step[2])), "a reuse step does not zero the DiffScore"


def test_state_is_reset_between_generations(sd_pipe):
    prunesched.apply(sd_pipe, Schedule.deepcache(_loop_length(sd_pipe), interval=3, branch=0, prune=0.6, method="dato"))
    first = generate(sd_pipe)
    assert np.array_equal(first, generate(sd_pipe))
    generate(sd_pipe, height=48, width=32)  # a different shape in between must not leak into the next run
    assert np.array_equal(first, generate(sd_pipe))


@pytest.mark.parametrize(("first", "expected"), [("reuse", "full"), (0, "full"), ("full", "full")])
def test_missing_cache_is_computed_in_full_and_recorded(sd_pipe, first, expected):
    n = _loop_length(sd_pipe)
    steps = (StepPlan(first, 0.0),) + (StepPlan("reuse", 0.0),) * (n - 1)
    handle = prunesched.apply(sd_pipe, Schedule(steps=steps))
    generate(sd_pipe)
    record = handle.records[0]
    assert (record.requested, record.performed, record.cache_missing) == (first, expected, first != "full")
    assert all(r.performed == "reuse" and not r.cache_missing for r in handle.records[1:])


def test_wrong_length_names_both_lengths_unless_resampling(sd_pipe):
    prunesched.apply(sd_pipe, Schedule.uniform(5, prune=0.5))
    with pytest.raises(ScheduleError, match=r"schedule has 5 steps but this pipeline's denoising loop has 7 iterations"):
        generate(sd_pipe)
    handle = prunesched.apply(sd_pipe, Schedule.uniform(5, prune=0.5), resample=True)
    generate(sd_pipe)
    assert len(handle.records) == 7


def test_bad_schedules_for_this_model_fail_at_apply(sd_pipe):
    with pytest.raises(ScheduleError, match="cache branch 9 is not valid for this UNet; valid branch ids: 0 to 8"):
        prunesched.apply(sd_pipe, Schedule.uniform(7, cache=9))
    with pytest.raises(ScheduleError, match=r"slot 'down_blocks.5' is not a transformer block"):
        prunesched.apply(sd_pipe, Schedule(steps=(StepPlan(),), slots=("down_blocks.5",)))
    with pytest.raises(ScheduleError, match=r"expected a prunesched.Schedule"):
        prunesched.apply(sd_pipe, {"steps": []})
    assert "forward" not in vars(sd_pipe.unet), "a failed apply leaves the pipeline untouched"


def test_a_failed_apply_keeps_the_previous_schedule(sd_pipe):
    handle = prunesched.apply(sd_pipe, Schedule.uniform(7, prune=0.3))
    with pytest.raises(ScheduleError, match="cache branch 9"):
        prunesched.apply(sd_pipe, Schedule.uniform(7, cache=9))
    generate(sd_pipe)
    assert [r.prune for r in handle.records] == [0.3] * 7


def test_stochastic_schedulers_keep_their_generator_and_eta(sd_pipe):
    """diffusers inspects scheduler.step's signature to pass ``generator``; our wrapper must keep it."""
    from diffusers import EulerAncestralDiscreteScheduler

    sd_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(sd_pipe.scheduler.config)
    reference = generate(sd_pipe)
    with prunesched.apply(sd_pipe, Schedule.uniform(STEPS)):
        first, second = generate(sd_pipe), generate(sd_pipe)
    assert np.array_equal(reference, first) and np.array_equal(reference, second)


def test_guidance_in_more_than_two_chunks_refuses_alignment(sd_pipe):
    from diffusers import StableDiffusionPAGPipeline

    pag = StableDiffusionPAGPipeline(**sd_pipe.components, pag_applied_layers=["mid"])
    with pytest.raises(UnsupportedModelError, match="StableDiffusionPAGPipeline batches guidance in more than two chunks"):
        prunesched.apply(pag, Schedule.uniform(7, prune=0.5, method="dato"))
    prunesched.apply(pag, Schedule.uniform(7, prune=0.5, method=DatoConfig(align_cfg=False)))
    prunesched.remove(pag)


def test_cache_steps_refuse_t2i_adapter_residuals(sd_pipe):
    from types import SimpleNamespace

    from diffusers import DDIMScheduler

    pipe = SimpleNamespace(unet=sd_pipe.unet, scheduler=DDIMScheduler.from_config(sd_pipe.scheduler.config))
    prunesched.apply(pipe, Schedule(steps=(StepPlan("full"), StepPlan(0))))
    pipe.scheduler.set_timesteps(2)
    sample, context = torch.randn(1, 4, 16, 16), torch.randn(1, 5, 32)
    residuals = [torch.zeros(1, 32, 16, 16), torch.zeros(1, 32, 8, 8), torch.zeros(1, 64, 4, 4)]  # one per down block
    out = pipe.unet(
        sample, pipe.scheduler.timesteps[0], encoder_hidden_states=context, down_intrablock_additional_residuals=list(residuals)
    ).sample
    pipe.scheduler.step(out, pipe.scheduler.timesteps[0], sample)
    with pytest.raises(UnsupportedModelError, match="T2I-Adapter"):
        pipe.unet(sample, pipe.scheduler.timesteps[1], encoder_hidden_states=context, down_intrablock_additional_residuals=list(residuals))
    prunesched.remove(pipe)


def test_prune_ratio_beyond_the_grid_limit_is_refused(sd_pipe):
    """On grids with odd sides the edge cells are smaller, so fewer than 3/4 of the tokens can go."""
    slot = ("mid_block.attentions.0.transformer_blocks.0",)
    schedule = Schedule(steps=(StepPlan("full", 0.75),) * _loop_length(sd_pipe), slots=slot)
    prunesched.apply(sd_pipe, schedule)
    with pytest.raises(ScheduleError, match=r"removes 56 of 75 tokens .* at most 51 can be pruned on a 5x15 grid"):
        generate(sd_pipe, height=40, width=120)  # latent 20x60, mid level 5x15: 3x8 base tokens


def test_unsupported_blocks_are_refused(sd_pipe):
    block = sd_pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0]
    block.norm_type = "ada_norm_single"
    try:
        with pytest.raises(UnsupportedModelError, match="uses norm_type='ada_norm_single'"):
            prunesched.apply(sd_pipe, Schedule.uniform(7, prune=0.5))
    finally:
        block.norm_type = "layer_norm"


def test_gligen_unet_is_refused():
    pipe = tiny_sd_pipeline()
    from diffusers import UNet2DConditionModel

    pipe.unet = UNet2DConditionModel(**{**pipe.unet.config, "attention_type": "gated"})
    with pytest.raises(UnsupportedModelError, match="GLIGEN"):
        prunesched.apply(pipe, Schedule.uniform(7, prune=0.5))


def test_pipelines_without_a_supported_denoiser_are_refused():
    class OtherDiTPipeline:  # e.g. Wan: a transformer prunesched does not patch
        transformer = torch.nn.Linear(1, 1)

    with pytest.raises(
        UnsupportedModelError,
        match=r"at pipe.unet, or an SD3Transformer2DModel, PixArtTransformer2DModel or FluxTransformer2DModel at pipe.transformer; "
        "got Linear",
    ):
        prunesched.apply(OtherDiTPipeline(), Schedule.uniform(3))
