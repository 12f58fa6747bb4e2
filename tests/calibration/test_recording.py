"""A recorded calibration holds exactly what hooks on the same modules see: each signal computed here by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from prunesched.calibration.recording import calibration_generator, record
from prunesched.evaluation.generation import step_callback
from prunesched.runtime.patch import find_denoiser

PROMPTS = 2

CASES = {
    # model: (first block, whose residual FBCache reads; the stack's head and tail, whose residual MagCache reads;
    #         a block whose output change is recorded; how a block's output gives its image tensor)
    "tiny-sd": ("down_blocks.0.resnets.0", "down_blocks.0", "up_blocks.2", "up_blocks.1", lambda out: out),
    "tiny-sd3": ("transformer_blocks.0", "transformer_blocks.0", "transformer_blocks.1", "transformer_blocks.1", lambda out: out[1]),
    "tiny-flux": (
        "transformer_blocks.0",
        "transformer_blocks.0",
        "single_transformer_blocks.2",
        "single_transformer_blocks.0",
        lambda out: out[1],
    ),
}


def relative_change(now: torch.Tensor, before: torch.Tensor) -> float:
    """mean |now - before| / mean |before|."""
    return float((now - before).abs().mean() / before.abs().mean())


def by_hand(generator: Any, model: str) -> list[dict[str, torch.Tensor]]:
    """Run the generator's batch with hooks of this test's own; per loop iteration, the tensors each signal compares."""
    first, head, tail, watched, image = CASES[model]
    denoiser = find_denoiser(generator.pipe)
    seen: dict[str, list[torch.Tensor]] = {}
    iterations: list[dict[str, torch.Tensor]] = []

    def keep(key: str, make: Any) -> Any:
        return lambda _m, args, kwargs, out: seen.setdefault(key, []).append(make(args, kwargs, out).detach().clone().float())

    def hidden(args: tuple, kwargs: dict) -> torch.Tensor:
        return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    hooks = [
        (first, keep("first", lambda a, k, out: image(out) - hidden(a, k))),
        (head, keep("head", lambda a, k, out: hidden(a, k))),
        (tail, keep("tail", lambda a, k, out: image(out))),
        (watched, keep("watched", lambda a, k, out: image(out))),
    ]
    handles = [denoiser.get_submodule(path).register_forward_hook(hook, with_kwargs=True) for path, hook in hooks]
    handles.append(
        denoiser.register_forward_hook(keep("output", lambda a, k, out: out[0] if isinstance(out, tuple) else out.sample), with_kwargs=True)
    )

    def end(_i: int) -> None:
        iterations.append({key: torch.cat(values) for key, values in seen.items()})
        seen.clear()

    try:
        generator.first_batch(None, **step_callback(generator.pipe, end))
    finally:
        for handle in handles:
            handle.remove()
    return iterations


@pytest.mark.parametrize("model", list(CASES))
def test_the_recorded_changes_are_those_of_the_hooked_outputs(model):
    generator = calibration_generator(model, prompts=PROMPTS, num_inference_steps=3)
    expected = by_hand(generator, model)
    calibration = record(generator)
    assert calibration.loop_length == len(expected) == generator.loop_length
    assert calibration.architecture == ("unet" if model == "tiny-sd" else "dit")
    column = calibration.blocks.index(CASES[model][3])
    for i in range(1, len(expected)):
        now, before = expected[i], expected[i - 1]
        for p in range(PROMPTS):
            rows = list(range(p, len(now["output"]), PROMPTS))  # guidance: [unconditional, conditional] halves

            residual, previous = (now["tail"] - now["head"])[rows], (before["tail"] - before["head"])[rows]
            dim = 1 if residual.ndim == 4 else -1
            ratio = float((residual.norm(dim=dim) / (previous.norm(dim=dim) + 1e-8)).mean())
            assert calibration.signals["first_block"][p, i] == pytest.approx(
                relative_change(now["first"][rows], before["first"][rows]), rel=1e-5
            )
            assert calibration.signals["output"][p, i] == pytest.approx(
                relative_change(now["output"][rows], before["output"][rows]), rel=1e-5
            )
            assert calibration.signals["blocks"][p, i, column] == pytest.approx(
                relative_change(now["watched"][rows], before["watched"][rows]), rel=1e-5
            )
            assert calibration.signals["magnitude_ratio"][p, i] == pytest.approx(ratio, rel=1e-5)
    denoiser = find_denoiser(generator.pipe)
    assert not any(module._forward_hooks for module in denoiser.modules())  # the recording took its hooks off


def test_a_unet_calibration_names_the_block_each_deepcache_branch_reads():
    calibration = record(calibration_generator("tiny-sd", prompts=1, num_inference_steps=2))
    # tiny-sd: 3 levels of 2 layers (3 up layers each); branch 0 reads the last up block's second layer, as DeepCache's
    # branch 0 on SD 1.5 does, and a branch that recomputes a whole up block reads the block before it
    assert calibration.branches[:3] == ("up_blocks.2.attentions.1", "up_blocks.2.attentions.0", "up_blocks.1")
    assert calibration.branches[-1] == "mid_block" and len(calibration.branches) == 9
    assert set(calibration.branches) <= set(calibration.blocks)
    assert calibration.fingerprint == "tiny-sd" and calibration.scheduler == "PNDMScheduler" and calibration.loop_length == 3
