"""Step tracking: every denoiser call gets the plan of its denoising-loop iteration, whatever the scheduler."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
)
from PIL import Image

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.errors import ScheduleError
from tests.runtime.helpers import loop_iterations

SCHEDULERS = {
    "pndm": PNDMScheduler.from_config,
    "ddim": DDIMScheduler.from_config,
    "euler": EulerDiscreteScheduler.from_config,
    "dpm++": lambda config: DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++"),
    "heun": HeunDiscreteScheduler.from_config,
}
STEPS = 10
IMAGE = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
MASK = Image.fromarray(np.pad(np.full((16, 16), 255, dtype=np.uint8), 8))
STRENGTH, FIRST = 0.6, 4
"""At 10 steps and strength 0.6, diffusers skips the loop's first 4 iterations (one per skipped step: order 1)."""


def _distinct_schedule(length: int) -> Schedule:
    """Each iteration gets a recognisable plan: prune (i mod 8) * 0.05 and a cache pattern."""
    return Schedule(steps=tuple(StepPlan("full" if i % 3 == 0 else 0, (i % 8) * 0.05) for i in range(length)))


def _check_records(pipe, handle, seen):
    timesteps = pipe.scheduler.timesteps
    offset = len(timesteps) - len(seen)
    assert len(handle.records) == len(seen), "one record per loop iteration"
    for (i, t), record in zip(seen, handle.records):
        assert record.index == offset + i
        assert float(timesteps[record.index]) == t, "the record's iteration is the one the pipeline was at"
        assert record.prune == handle.schedule.steps[record.index].prune
        assert record.denoiser_calls == 1


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_txt2img_iterations_for_each_scheduler(sd_pipe, name):
    sd_pipe.scheduler = SCHEDULERS[name](sd_pipe.scheduler.config)
    sd_pipe.scheduler.set_timesteps(STEPS)
    length = len(sd_pipe.scheduler.timesteps)
    assert length == {"pndm": STEPS + 1, "heun": 2 * STEPS - 1}.get(name, STEPS)
    handle = prunesched.apply(sd_pipe, _distinct_schedule(length))
    seen = loop_iterations(sd_pipe, steps=STEPS)
    assert [r.index for r in handle.records] == list(range(length))
    _check_records(sd_pipe, handle, seen)


def _image_pipeline(sd_pipe, name, kind="img2img"):
    """The tiny SD pipeline's components as an img2img (or inpaint) pipeline with scheduler ``name``, set to STEPS steps."""
    scheduler = SCHEDULERS[name](sd_pipe.scheduler.config)
    cls = {"img2img": StableDiffusionImg2ImgPipeline, "inpaint": StableDiffusionInpaintPipeline}[kind]
    pipe = cls(**{**sd_pipe.components, "scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    return pipe


def _run_image_pipeline(pipe, strength=STRENGTH):
    """Generate from IMAGE (and MASK for inpaint); the ``(loop index, timestep)`` of each iteration that ran."""
    extra = {"mask_image": MASK} if isinstance(pipe, StableDiffusionInpaintPipeline) else {}
    return loop_iterations(pipe, steps=STEPS, image=IMAGE, strength=strength, height=None, width=None, **extra)


@pytest.mark.parametrize("strength", [0.6, 0.8])
@pytest.mark.parametrize("name", ["pndm", "ddim", "euler", "dpm++"])
def test_img2img_starts_part_way(sd_pipe, name, strength):
    """At 10 steps and strength 0.8 PNDM starts at position 2, whose timestep equals position 1's."""
    pipe = _image_pipeline(sd_pipe, name)
    handle = prunesched.apply(pipe, _distinct_schedule(len(pipe.scheduler.timesteps)))
    seen = _run_image_pipeline(pipe, strength)
    assert 0 < len(seen) < len(pipe.scheduler.timesteps)
    assert handle.records[0].index == len(pipe.scheduler.timesteps) - len(seen)
    assert handle.records[0].performed == "full"
    _check_records(pipe, handle, seen)
    prunesched.remove(pipe)


def test_inpaint_variant(sd_pipe):
    pipe = _image_pipeline(sd_pipe, "pndm", "inpaint")
    handle = prunesched.apply(pipe, _distinct_schedule(len(pipe.scheduler.timesteps)))
    seen = _run_image_pipeline(pipe, strength=1.0)
    _check_records(pipe, handle, seen)
    prunesched.remove(pipe)


@pytest.mark.parametrize(("kind", "name"), [("img2img", "ddim"), ("img2img", "pndm"), ("img2img", "euler"), ("inpaint", "ddim")])
def test_below_strength_1_a_text_to_image_schedule_runs_its_tail_unchanged(sd_pipe, kind, name):
    """The schedule made for text-to-image at the same step count fits as it is: each iteration that runs takes the
    step of its position (the plan made for its noise level), every full step of that tail is computed in full where the
    schedule puts it, and the first iteration that runs computes the whole network although its step asks to reuse."""
    pipe = _image_pipeline(sd_pipe, name, kind)
    length = len(pipe.scheduler.timesteps)
    schedule = Schedule(steps=tuple(StepPlan("full" if i % 3 == 0 else "reuse", i * 0.05) for i in range(length)))
    handle = prunesched.apply(pipe, schedule)
    seen = _run_image_pipeline(pipe)
    assert length - len(seen) == FIRST, "the loop the pipeline ran"
    records = handle.records
    assert [r.index for r in records] == list(range(FIRST, length))
    assert [(r.requested, r.prune) for r in records] == [(s.cache, s.prune) for s in schedule.steps[FIRST:]]
    assert (records[0].requested, records[0].performed, records[0].cache_missing) == ("reuse", "full", True)
    assert [r.performed for r in records[1:]] == [s.cache for s in schedule.steps[FIRST + 1 :]]
    assert not any(r.cache_missing for r in records[1:])
    prunesched.remove(pipe)


@pytest.mark.parametrize("name", ["ddim", "pndm", "euler"])
def test_below_strength_1_a_schedule_of_another_length_is_refused_or_stretched_to_the_whole_loop(sd_pipe, name):
    """A schedule searched at 20 steps, run at 10 and strength 0.6: the error names the loop and the iterations that
    run; resampling stretches the schedule to the whole loop, not to the iterations that run, and the tail runs."""
    pipe = _image_pipeline(sd_pipe, name)
    length = len(pipe.scheduler.timesteps)
    pipe.scheduler.set_timesteps(2 * STEPS)
    schedule = _distinct_schedule(len(pipe.scheduler.timesteps))
    prunesched.apply(pipe, schedule)
    expected = (
        f"schedule has {len(schedule)} steps but this pipeline's denoising loop has {length} iterations (len(scheduler.timesteps)); "
        f"iterations {FIRST}-{length - 1} of {length} run at this strength, and a schedule covers all {length}; "
        f"use schedule.resample({length}) or apply(..., resample=True)"
    )
    with pytest.raises(ScheduleError) as refused:
        _run_image_pipeline(pipe)
    assert str(refused.value) == expected
    handle = prunesched.apply(pipe, schedule, resample=True)
    seen = _run_image_pipeline(pipe)
    stretched = schedule.resample(length).steps
    assert [r.index for r in handle.records] == list(range(length - len(seen), length)) == list(range(FIRST, length))
    assert [(r.requested, r.prune) for r in handle.records] == [(s.cache, s.prune) for s in stretched[FIRST:]]
    assert handle.records[0].performed == "full"
    prunesched.remove(pipe)


def test_scheduler_swapped_after_apply_is_followed(sd_pipe):
    handle = prunesched.apply(sd_pipe, _distinct_schedule(STEPS))
    sd_pipe.scheduler = DDIMScheduler.from_config(sd_pipe.scheduler.config)
    seen = loop_iterations(sd_pipe, steps=STEPS)
    _check_records(sd_pipe, handle, seen)
    prunesched.remove(sd_pipe)
    assert "step" not in vars(sd_pipe.scheduler)


def test_non_batched_cfg_two_calls_per_iteration_share_the_plan_and_keep_separate_caches(sd_pipe):
    """A loop that calls the UNet twice per iteration (uncond, then cond), as some pipelines do."""
    unet, scheduler = sd_pipe.unet, DDIMScheduler.from_config(sd_pipe.scheduler.config)
    pipe = SimpleNamespace(unet=unet, scheduler=scheduler)
    steps = (StepPlan("full", 0.5), StepPlan("reuse", 0.0), StepPlan(0, 0.5), StepPlan("full", 0.0))

    def run():
        torch.manual_seed(0)
        latents = torch.randn(1, 4, 16, 16)
        context = {"uncond": torch.zeros(1, 5, 32), "cond": torch.ones(1, 5, 32)}
        outputs = []
        scheduler.set_timesteps(4)
        for t in scheduler.timesteps:
            uncond = unet(latents, t, encoder_hidden_states=context["uncond"]).sample
            cond = unet(latents, t, encoder_hidden_states=context["cond"]).sample
            outputs.append((uncond, cond))
            latents = scheduler.step(uncond + 2.0 * (cond - uncond), t, latents).prev_sample
        return outputs

    handle = prunesched.apply(pipe, Schedule(steps=steps))
    outputs = run()
    assert [r.denoiser_calls for r in handle.records] == [2, 2, 2, 2]
    assert [r.performed for r in handle.records] == ["full", "reuse", 0, "full"]
    assert torch.equal(outputs[1][0], outputs[0][0]) and torch.equal(outputs[1][1], outputs[0][1])
    assert not torch.equal(outputs[1][0], outputs[1][1]), "each call reuses its own previous output"

    def run_uncond_only():
        torch.manual_seed(0)
        latents, outputs = torch.randn(1, 4, 16, 16), []
        scheduler.set_timesteps(4)
        for t in scheduler.timesteps:
            outputs.append(unet(latents, t, encoder_hidden_states=torch.zeros(1, 5, 32)).sample)
            latents = scheduler.step(outputs[-1] + 2.0 * (two_call[len(outputs) - 1][1] - outputs[-1]), t, latents).prev_sample
        return outputs

    two_call = outputs
    alone = run_uncond_only()
    for step, (uncond, _cond) in enumerate(two_call):
        assert torch.equal(uncond, alone[step]), f"iteration {step}: the uncond stream's caches never see the cond call"
    prunesched.remove(pipe)
