"""``apply`` is all or nothing: a refused schedule, or a failure inside any installer, leaves the pipeline as it was."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import prunesched
from prunesched import PruneLess, Schedule, ScheduleError, UnsupportedModelError
from prunesched.models.tiny import tiny_sd3_pipeline
from prunesched.runtime import atedm_pruning, caching, similarity_pruning
from prunesched.runtime.methods import AtedmConfig, CatConfig
from prunesched.runtime.patch import PatchHandle
from prunesched.runtime.patcher import Patcher
from tests.runtime.helpers import PROMPT, generate

STEPS = 6  # PNDM: 7 loop iterations
LOOP = STEPS + 1


class InjectedFailure(RuntimeError):
    pass


def fail_on_call(monkeypatch: pytest.MonkeyPatch, owner: ModuleType | type, name: str, call: int) -> None:
    """Make ``owner.name`` raise on its ``call``-th call (1-based) and work normally before, so the install is partial."""
    original = getattr(owner, name)
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise InjectedFailure(f"{name} call {call}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def assert_unpatched(pipe: Any) -> None:
    """No wrapper, hook or handle of prunesched is left on the denoiser or the scheduler."""
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    for name, module in denoiser.named_modules():
        assert "forward" not in vars(module), f"{name or 'denoiser'} still has an instance forward"
        assert not module._forward_hooks and not module._forward_pre_hooks, f"{name or 'denoiser'} still has hooks"
    assert not hasattr(denoiser, "_prunesched_handle")
    assert "step" not in vars(pipe.scheduler) and "set_timesteps" not in vars(pipe.scheduler)


def dit_generate(pipe: Any) -> np.ndarray:
    return pipe(PROMPT, num_inference_steps=STEPS, height=32, width=32, generator=torch.Generator().manual_seed(0), output_type="np").images


@pytest.fixture(scope="module")
def sd3_pipe() -> Any:
    return tiny_sd3_pipeline()


DEEPCACHE_DATO = Schedule.deepcache(LOOP, interval=2, branch=1, prune=0.5, method="dato")
UNET_FAILURES: dict[str, tuple[Schedule, ModuleType | type, str, int]] = {
    # a DeepCache + DaTo schedule is in place; the new schedule's install fails half-way through one installer
    "caching": (Schedule.deepcache(LOOP, interval=3, branch=0, prune=0.3, method="sito"), caching, "_cached_forward", 3),
    "similarity pruning": (
        Schedule.deepcache(LOOP, interval=3, branch=0, prune=0.3, method="random"),
        similarity_pruning,
        "_pruned_attention",
        2,
    ),
    "atedm": (Schedule.deepcache(LOOP, interval=3, branch=0, prune=0.3, method=AtedmConfig(iterations=2)), atedm_pruning, "_on_kept", 2),
    "denoiser wrap": (Schedule.deepcache(LOOP, interval=3, branch=0, prune=0.3, method="dato"), PatchHandle, "_wrap_denoiser", 1),
    "dato feature hook": (Schedule.uniform(LOOP, prune=0.3, method="dato"), Patcher, "add_forward_hook", 1),
}


@pytest.mark.parametrize("installer", list(UNET_FAILURES))
def test_a_failing_unet_installer_leaves_the_previous_schedule_active_and_removable(sd_pipe, monkeypatch, installer):
    schedule, owner, name, call = UNET_FAILURES[installer]
    assert_unpatched(sd_pipe)
    reference = generate(sd_pipe)
    previous = prunesched.apply(sd_pipe, DEEPCACHE_DATO)
    before = generate(sd_pipe)
    fail_on_call(monkeypatch, owner, name, call)
    with pytest.raises(InjectedFailure):
        prunesched.apply(sd_pipe, schedule)
    monkeypatch.undo()
    assert sd_pipe.unet._prunesched_handle is previous
    assert np.array_equal(before, generate(sd_pipe)), "the previous schedule runs as before"
    assert [r.performed for r in previous.records] == [s.cache for s in DEEPCACHE_DATO.steps]
    prunesched.remove(sd_pipe)
    assert_unpatched(sd_pipe)
    assert np.array_equal(reference, generate(sd_pipe))


def test_a_failing_install_on_an_unpatched_pipeline_leaves_it_unpatched(sd_pipe, monkeypatch):
    reference = generate(sd_pipe)
    fail_on_call(monkeypatch, atedm_pruning, "_on_kept", 3)
    with pytest.raises(InjectedFailure):
        prunesched.apply(sd_pipe, Schedule.deepcache(LOOP, interval=2, branch=0, prune=0.5, method=AtedmConfig(iterations=2)))
    monkeypatch.undo()
    assert_unpatched(sd_pipe)
    assert np.array_equal(reference, generate(sd_pipe))


@pytest.mark.parametrize("installer", ["cat", "denoiser wrap"])
def test_a_failing_dit_installer_leaves_the_previous_schedule_active_and_removable(sd3_pipe, monkeypatch, installer):
    assert_unpatched(sd3_pipe)
    reference = dit_generate(sd3_pipe)
    previous = prunesched.apply(sd3_pipe, Schedule.cat(STEPS, t0=3, alpha=0.5))
    try:
        before = dit_generate(sd3_pipe)
        if installer == "cat":  # the patch embedding and output projection are hooked, the key projections not yet
            fail_on_call(monkeypatch, Patcher, "add_forward_hook", 3)
        else:
            fail_on_call(monkeypatch, PatchHandle, "_wrap_denoiser", 1)
        with pytest.raises(InjectedFailure):
            prunesched.apply(sd3_pipe, Schedule.cat(STEPS, t0=2, alpha=0.3))
        monkeypatch.undo()
        assert sd3_pipe.transformer._prunesched_handle is previous
        assert np.array_equal(before, dit_generate(sd3_pipe))
        assert [bool(r.tokens) for r in previous.records] == [False] * 3 + [True] * 3
    finally:
        prunesched.remove(sd3_pipe)
    assert_unpatched(sd3_pipe)
    assert np.array_equal(reference, dit_generate(sd3_pipe))


def test_a_refused_schedule_leaves_the_previous_schedule_active(sd_pipe):
    reference = generate(sd_pipe)
    deepcache = prunesched.apply(sd_pipe, Schedule.deepcache(LOOP, interval=2, branch=1))
    before = generate(sd_pipe)
    unknown_block = dataclasses.replace(
        Schedule.uniform(LOOP, prune=0.5, method=AtedmConfig()), prune_less=PruneLess(2, ("up_blocks.9.attentions.0",))
    )
    with pytest.raises(ScheduleError, match=r"prune_less block 'up_blocks.9.attentions.0' is not an attention block"):
        prunesched.apply(sd_pipe, unknown_block)
    block = sd_pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0]
    block.set_chunk_feed_forward(1)
    try:
        with pytest.raises(UnsupportedModelError, match="its feed-forward is chunked"):
            prunesched.apply(sd_pipe, Schedule.deepcache(LOOP, interval=2, branch=0, prune=0.5, method="atedm"))
    finally:
        block.set_chunk_feed_forward(None)
    assert sd_pipe.unet._prunesched_handle is deepcache
    assert np.array_equal(before, generate(sd_pipe))
    prunesched.remove(sd_pipe)
    assert_unpatched(sd_pipe)
    assert np.array_equal(reference, generate(sd_pipe))


def test_cat_is_refused_on_a_unet_before_anything_is_touched(sd_pipe):
    previous = prunesched.apply(sd_pipe, Schedule.uniform(LOOP, prune=0.3))
    with pytest.raises(ScheduleError, match="method 'cat' prunes the tokens of a DiT"):
        prunesched.apply(sd_pipe, Schedule.cat(LOOP, t0=3, method=CatConfig()))
    assert sd_pipe.unet._prunesched_handle is previous


def test_the_selection_timer_runs_around_every_token_selection(sd_pipe):
    entered: list[int] = []

    class Region:
        def __enter__(self) -> None:
            entered.append(1)

        def __exit__(self, *exc: object) -> None:
            pass

    make: Callable[[], Region] = Region
    with prunesched.apply(sd_pipe, Schedule.uniform(LOOP, prune=0.5, method="sito")) as handle:
        handle.time_selection(make)
        generate(sd_pipe)
        assert len(entered) == LOOP * len(handle.slots)
        handle.time_selection(None)
        generate(sd_pipe)
        assert len(entered) == LOOP * len(handle.slots)
