"""DeepCache-style steps: which modules run, and equality with the DeepCache package itself."""

import numpy as np
import pytest
from DeepCache import DeepCacheSDHelper
from diffusers import DDIMScheduler

import prunesched
from prunesched import Schedule, StepPlan
from prunesched.models.tiny import tiny_sd_pipeline
from tests.runtime.helpers import generate


def _calls_per_iteration(pipe, **kwargs):
    """For each loop iteration, the names of the UNet's leaf modules that ran."""
    iterations = [[]]
    leaves = [(name, m) for name, m in pipe.unet.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda *_, name=name: iterations[-1].append(name)) for name, m in leaves]

    def callback(_pipe, _i, _t, callback_kwargs):
        iterations.append([])
        return callback_kwargs

    try:
        generate(pipe, callback_on_step_end=callback, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return [set(names) for names in iterations[:-1]]


def test_branch_0_recomputes_only_conv_in_the_last_up_layer_and_conv_out(sd_pipe):
    steps = (StepPlan("full"), StepPlan(0), StepPlan("reuse"), StepPlan(0)) + (StepPlan("full"),) * 3
    handle = prunesched.apply(sd_pipe, Schedule(steps=steps))
    calls = _calls_per_iteration(sd_pipe)
    assert [r.performed for r in handle.records] == ["full", 0, "reuse", 0, "full", "full", "full"]
    full, partial, reuse = calls[0], calls[1], calls[2]
    assert any(n.startswith("down_blocks.1") for n in full) and any(n.startswith("mid_block") for n in full)
    blocks = {n.split(".")[0] if not n.startswith(("down_blocks", "up_blocks")) else ".".join(n.split(".")[:4]) for n in partial}
    assert {"conv_in", "conv_out", "up_blocks.2.resnets.2", "up_blocks.2.attentions.2"} <= blocks
    assert not any(n.startswith(("down_blocks", "mid_block")) for n in partial)
    assert not any(n.startswith("up_blocks") and not n.startswith(("up_blocks.2.resnets.2", "up_blocks.2.attentions.2")) for n in partial)
    assert reuse == set(), "a reuse step calls no UNet module"
    assert calls[3] == partial


def test_branch_1_also_recomputes_the_first_down_layer(sd_pipe):
    steps = (StepPlan("full"), StepPlan(1)) + (StepPlan("full"),) * 5
    prunesched.apply(sd_pipe, Schedule(steps=steps))
    partial = _calls_per_iteration(sd_pipe)[1]
    layers = {".".join(n.split(".")[:4]) for n in partial if n.startswith(("down_blocks", "up_blocks"))}
    assert layers == {
        "down_blocks.0.resnets.0",
        "down_blocks.0.attentions.0",
        "up_blocks.2.resnets.1",
        "up_blocks.2.attentions.1",
        "up_blocks.2.resnets.2",
        "up_blocks.2.attentions.2",
    }


def test_pruning_in_partial_steps_only_touches_recomputed_slots(sd_pipe):
    n = 7
    handle = prunesched.apply(sd_pipe, Schedule.deepcache(n, interval=3, branch=0, prune=0.5))
    generate(sd_pipe)
    assert set(handle.records[1].tokens) == {"up_blocks.2.attentions.2.transformer_blocks.0"}
    assert len(handle.records[0].tokens) == 5


@pytest.fixture(scope="module")
def deepcache_pipe():
    """A pipeline of its own: DeepCache's ``disable`` leaves instance ``forward`` attributes behind."""
    pipe = tiny_sd_pipeline()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


@pytest.mark.parametrize("branch", range(9))
def test_matches_the_deepcache_package_bit_for_bit(deepcache_pipe, branch):
    """Our branch ids mean what DeepCache's ``cache_branch_id`` means (DDIM: DeepCache's step lookup needs unique timesteps)."""
    sd_pipe = deepcache_pipe
    helper = DeepCacheSDHelper(pipe=sd_pipe)
    helper.set_params(cache_interval=3, cache_branch_id=branch)
    helper.enable()
    try:
        theirs = generate(sd_pipe, steps=10)
    finally:
        helper.disable()
    with prunesched.apply(sd_pipe, Schedule.deepcache(10, interval=3, branch=branch)):
        ours = generate(sd_pipe, steps=10)
    assert np.array_equal(theirs, ours)
