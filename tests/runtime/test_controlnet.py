"""ControlNet pipelines: exactness, what the ControlNet computes at each kind of step, and equality with DeepCache,
whose cache steps run the ControlNet in full."""

import numpy as np
import pytest
import torch
from DeepCache import DeepCacheSDHelper
from diffusers import (
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
)

import prunesched
from prunesched import Schedule, StepPlan, UnsupportedModelError
from prunesched.models.tiny import tiny_controlnet, tiny_sd_controlnet_pipeline, tiny_sdxl_controlnet_pipeline
from tests.runtime.helpers import generate

CONTROL = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _with_ddim(pipe):
    """DDIM: DeepCache finds its steps by timestep, which PNDM repeats."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


@pytest.fixture(scope="module")
def sd_controlnet():
    return _with_ddim(tiny_sd_controlnet_pipeline())


@pytest.fixture(scope="module")
def sdxl_controlnet():
    return _with_ddim(tiny_sdxl_controlnet_pipeline())


def _modules_per_iteration(pipe, schedule, **kwargs):
    """For each loop iteration, the names of the ControlNet's leaf modules whose own forward ran, with ``schedule`` applied.

    Each leaf counts in its own ``forward``, installed before ``apply``: a module a cache step skips returns
    its cached output without calling it (a forward hook would fire all the same).
    """
    iterations = [[]]

    def counting(forward, name):
        return lambda *args, **kw: iterations[-1].append(name) or forward(*args, **kw)

    leaves = [(name, m) for name, m in pipe.controlnet.named_modules() if not list(m.children())]
    for name, m in leaves:
        m.forward = counting(m.forward, name)

    def callback(_pipe, _i, _t, callback_kwargs):
        iterations.append([])
        return callback_kwargs

    try:
        with prunesched.apply(pipe, schedule) as handle:
            generate(pipe, image=CONTROL, callback_on_step_end=callback, steps=len(schedule), **kwargs)
    finally:
        for _, m in leaves:
            del m.forward
    return handle.records, [set(names) for names in iterations[:-1]]


def _deepcache(pipe, branch, **kwargs):
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=3, cache_branch_id=branch)
    helper.enable()
    try:
        return generate(pipe, steps=10, **kwargs)
    finally:
        helper.disable()
        vars(pipe.unet).pop("forward", None)  # DeepCache leaves its own forward on the instance


@pytest.mark.parametrize("which", ["sd_controlnet", "sdxl_controlnet"])
def test_all_full_is_bit_identical_and_remove_restores(which, request):
    pipe = request.getfixturevalue(which)
    reference = generate(pipe, image=CONTROL)
    n = 6  # iterations of 6 DDIM steps
    with prunesched.apply(pipe, Schedule.uniform(n)):
        assert np.array_equal(reference, generate(pipe, image=CONTROL))
    prunesched.apply(pipe, Schedule.deepcache(n, interval=2, branch=1))
    assert not np.array_equal(reference, generate(pipe, image=CONTROL))
    prunesched.remove(pipe)
    assert np.array_equal(reference, generate(pipe, image=CONTROL))
    assert not any("forward" in vars(m) for m in pipe.controlnet.modules()), "every ControlNet wrapper is gone"


def test_the_controlnet_computes_only_what_each_step_reads(sd_controlnet):
    steps = ("full", 0, "reuse", 1, 3, 8, "reuse")
    records, ran = _modules_per_iteration(sd_controlnet, Schedule(steps=tuple(StepPlan(s) for s in steps)))
    assert [r.performed for r in records] == list(steps)
    full = ran[0]
    assert ran[2] == ran[6] == set(), "a reuse step runs no ControlNet module"
    assert ran[5] == full, "the deepest branch reads the mid residual, so the whole ControlNet runs"

    def down_path(names):
        return {".".join(n.split(".")[:4]) for n in names if n.startswith(("down_blocks", "mid_block"))}

    def residuals(names):
        return {int(n.split(".")[1]) for n in names if n.startswith("controlnet_down_blocks")}

    assert down_path(ran[1]) == set() and residuals(ran[1]) == {0}, "branch 0 reads conv_in's skip alone"
    assert down_path(ran[3]) == {"down_blocks.0.resnets.0", "down_blocks.0.attentions.0"} and residuals(ran[3]) == {0, 1}
    assert down_path(ran[4]) == {f"down_blocks.0.{kind}.{i}" for kind in ("resnets", "attentions") for i in (0, 1)} | {
        "down_blocks.0.downsamplers.0"
    }
    assert residuals(ran[4]) == {0, 1, 2, 3}
    assert "controlnet_mid_block" not in ran[1] | ran[3] | ran[4]
    assert all({"conv_in", "controlnet_cond_embedding.conv_in"} <= ran[i] for i in (1, 3, 4)), "the shallow part always runs"


def test_all_reuse_runs_the_controlnet_once(sd_controlnet):
    records, ran = _modules_per_iteration(sd_controlnet, Schedule.uniform(10, cache="reuse"))
    assert [bool(names) for names in ran] == [True] + [False] * 9
    assert records[0].cache_missing


@pytest.mark.parametrize(
    ("which", "branch"), [("sd_controlnet", 0), ("sd_controlnet", 2), ("sd_controlnet", 4), ("sd_controlnet", 8), ("sdxl_controlnet", 4)]
)
def test_cache_steps_equal_deepcache_running_the_controlnet_in_full(which, branch, request):
    """Branch 2 ends a block, 4 is in the middle of one, 8 reads the mid residual."""
    pipe = request.getfixturevalue(which)
    theirs = _deepcache(pipe, branch, image=CONTROL)
    with prunesched.apply(pipe, Schedule.deepcache(10, interval=3, branch=branch)):
        assert np.array_equal(theirs, generate(pipe, steps=10, image=CONTROL))


def test_cache_steps_use_the_control_signal(sd_controlnet):
    """Control only from the second half of the loop on, where every step is a cache step at branch 0."""
    late = {"image": CONTROL, "control_guidance_start": 0.5}
    uncontrolled = generate(sd_controlnet, steps=10, image=CONTROL, controlnet_conditioning_scale=0.0)
    steps = (StepPlan("full"),) + (StepPlan(0),) * 9
    with prunesched.apply(sd_controlnet, Schedule(steps=steps)):
        ours = generate(sd_controlnet, steps=10, **late)
    assert not np.array_equal(ours, uncontrolled)
    helper = DeepCacheSDHelper(pipe=sd_controlnet)
    helper.set_params(cache_interval=10, cache_branch_id=0)
    helper.enable()
    try:
        assert np.array_equal(ours, generate(sd_controlnet, steps=10, **late))
    finally:
        helper.disable()
        vars(sd_controlnet.unet).pop("forward", None)


def test_multicontrolnet_in_guess_mode_equals_deepcache(sd_controlnet):
    second = tiny_controlnet(sd_controlnet.unet, seed=7)
    pipe = StableDiffusionControlNetPipeline(**{**sd_controlnet.components, "controlnet": [sd_controlnet.controlnet, second]})
    inputs = {"image": [CONTROL, 1 - CONTROL], "guess_mode": True}
    theirs = _deepcache(pipe, 1, **inputs)
    with prunesched.apply(pipe, Schedule.deepcache(10, interval=3, branch=1)):
        assert np.array_equal(theirs, generate(pipe, steps=10, **inputs))


@pytest.mark.parametrize("kind", [StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetInpaintPipeline])
def test_img2img_and_inpaint_skip_the_controlnet_at_reuse_steps(sd_controlnet, kind):
    pipe = kind(**sd_controlnet.components)
    extra = {"image": torch.rand(1, 3, 32, 32), "control_image": CONTROL, "strength": 0.6}
    if kind is StableDiffusionControlNetInpaintPipeline:
        extra["mask_image"] = torch.ones(1, 1, 32, 32)
    reference = generate(pipe, steps=10, **extra)
    schedule = Schedule(steps=(StepPlan("full"), StepPlan("reuse"), StepPlan(0)) * 3 + (StepPlan("reuse"),))
    computed = []
    hook = pipe.controlnet.conv_in.register_forward_hook(lambda *_: computed.append(1))
    with prunesched.apply(pipe, schedule) as handle:
        generate(pipe, steps=10, **extra)
    hook.remove()
    assert len(handle.records) == 6 and handle.records[0].index == 4, "strength 0.6: the loop starts at position 4"
    assert len(computed) == sum(r.performed != "reuse" for r in handle.records) == 4
    assert np.array_equal(reference, generate(pipe, steps=10, **extra))


def test_other_controlnets_are_refused(sd_controlnet):
    pipe = StableDiffusionControlNetPipeline(**sd_controlnet.components)
    pipe.controlnet = torch.nn.Linear(1, 1)  # e.g. a ControlNetUnionModel
    with pytest.raises(UnsupportedModelError, match=r"a ControlNetModel or a MultiControlNetModel of them at pipe.controlnet; got Linear"):
        prunesched.apply(pipe, Schedule.uniform(7))
    assert "forward" not in vars(pipe.unet)


def test_a_controlnet_that_does_not_mirror_the_unet_is_refused_for_cache_steps(sd_controlnet):
    other = ControlNetModel.from_config({**sd_controlnet.controlnet.config, "layers_per_block": 1})
    pipe = StableDiffusionControlNetPipeline(**{**sd_controlnet.components, "controlnet": other})
    prunesched.apply(pipe, Schedule.uniform(7, cache="reuse"))
    with pytest.raises(UnsupportedModelError, match=r"controlnet's down path .* does not mirror the UNet's .* with 9 skips"):
        prunesched.apply(pipe, Schedule.uniform(7, cache=0))
    prunesched.remove(pipe)
