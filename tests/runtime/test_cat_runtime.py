"""CAT pruning on tiny SD3 and PixArt-Σ pipelines built from configs (random weights, offline)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import prunesched
from prunesched import CatConfig, Schedule, ScheduleError, StepPlan, UnsupportedModelError
from prunesched.models.tiny import tiny_pixart_pipeline, tiny_sd3_pipeline, tiny_sd_pipeline
from prunesched.runtime import cat_pruning
from prunesched.runtime.tokens.cat import cat_clusters, cat_select
from tests.runtime.helpers import PROMPT, dit_inputs

STEPS, T0, PRUNE = 6, 3, 0.7
BUILDERS = {"sd3": tiny_sd3_pipeline, "pixart": tiny_pixart_pipeline}
EXTRA = {"sd3": {}, "pixart": {"use_resolution_binning": False, "clean_caption": False}}


def cat_schedule(steps: int = STEPS, t0: int = T0, **method: Any) -> Schedule:
    return Schedule.cat(steps, t0, alpha=round(1 - PRUNE, 6), method=CatConfig(**method))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def dit(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, BUILDERS[request.param]()


def run(kind: str, pipe: Any, height: int = 32, width: int = 48, **kwargs: Any) -> tuple[Any, list[torch.Tensor]]:
    """Images and the latents after every step of a fixed-seed generation."""
    latents: list[torch.Tensor] = []

    def step_end(_pipe: Any, _i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        latents.append(tensors["latents"].clone())
        return tensors

    # PixArt-Σ's pipeline still has the older per-step callback
    callback = {"callback_on_step_end": step_end} if kind == "sd3" else {"callback": lambda _i, _t, x: latents.append(x.clone())}
    images = pipe(
        PROMPT,
        num_inference_steps=STEPS,
        height=height,
        width=width,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **callback,
        **EXTRA[kind],
        **kwargs,
    ).images
    return images, latents


def test_steps_up_to_t0_are_bit_identical_and_pruning_changes_the_rest(dit):
    kind, pipe = dit
    base, base_latents = run(kind, pipe)
    with prunesched.apply(pipe, cat_schedule()) as handle:
        images, latents = run(kind, pipe)
    for i in range(T0):
        assert torch.equal(latents[i], base_latents[i]), f"step {i} before pruning differs"
    assert not torch.equal(latents[T0], base_latents[T0])
    assert [bool(r.tokens) for r in handle.records] == [False] * T0 + [True] * (STEPS - T0)
    assert images.shape == base.shape


@pytest.mark.parametrize("height, width", [(32, 48), (48, 32), (32, 32)])
def test_exactly_ceil_alpha_n_tokens_are_recomputed_with_one_index_set_for_both_cfg_halves(dit, height, width):
    kind, pipe = dit
    transformer = pipe.transformer
    seen: dict[str, list[torch.Tensor]] = {"all": [], "computed": []}
    hooks = _watch_tokens(transformer, seen)
    try:
        with prunesched.apply(pipe, cat_schedule()) as handle:
            run(kind, pipe, height, width)
    finally:
        for hook in hooks:
            hook.remove()
    tokens = (height // 2 // 2) * (width // 2 // 2)  # VAE factor 2, patch 2
    expected = math.ceil(0.3 * tokens)
    for step in range(STEPS):
        full, computed = seen["all"][step], seen["computed"][step]
        assert full.shape[:2] == (2, tokens)  # one image with classifier-free guidance
        if step < T0:
            assert computed.shape[1] == tokens
            continue
        assert computed.shape[1] == expected and handle.records[step].tokens == {"transformer": (expected, tokens)}
        halves = [_positions(full[b], computed[b]) for b in range(2)]
        assert halves[0] == halves[1] and len(set(halves[0])) == expected


def _watch_tokens(transformer: Any, seen: dict[str, list[torch.Tensor]]) -> list[Any]:
    """Hooks that append the patch embedding's full output to ``seen["all"]`` and the tokens the first block computes
    to ``seen["computed"]``; registered before ``apply``, they see the tokens before CAT gathers them."""
    return [
        transformer.pos_embed.register_forward_hook(lambda _m, _a, out: seen["all"].append(out)),
        transformer.transformer_blocks[0].register_forward_pre_hook(
            lambda _m, args, kwargs: seen["computed"].append(kwargs.get("hidden_states", args[0] if args else None)), with_kwargs=True
        ),
    ]


def _positions(full: torch.Tensor, computed: torch.Tensor) -> list[int]:
    """Where each computed token sits among all tokens (patch embeddings carry their position, so rows are unique)."""
    return [int((full == row).all(-1).nonzero()[0]) for row in computed]


def test_the_runtime_recomputes_what_cat_select_chooses_from_the_conditional_halfs_noise_and_staleness(dit):
    """The wiring, checked against the token functions on the outputs the pipeline really produced: the reference
    is the second-to-last full step, the conditional half chooses, the EWMA counts every computed token, and
    PixArt's variance channels are no part of the noise."""
    kind, pipe = dit
    transformer, method = pipe.transformer, CatConfig()
    seen: dict[str, list[torch.Tensor]] = {"all": [], "computed": [], "outputs": []}
    hooks = _watch_tokens(transformer, seen)
    try:
        with prunesched.apply(pipe, cat_schedule()):
            hooks.append(transformer.proj_out.register_forward_hook(lambda _m, _a, out: seen["outputs"].append(out)))  # after CAT's scatter
            run(kind, pipe)
    finally:
        for hook in hooks:
            hook.remove()
    channels = transformer.config.out_channels
    noise = [out[1:].unflatten(-1, (-1, channels))[..., : transformer.config.in_channels].flatten(-2) for out in seen["outputs"]]
    grid = (32 // 2 // 2, 48 // 2 // 2)
    tokens = grid[0] * grid[1]
    reference = noise[T0 - 2]
    labels, adjacency = cat_clusters(noise[T0 - 1] - reference, grid, method.clusters, method.kmeans_iterations, method.position_weight)
    frequency = torch.zeros(1, tokens)
    for step in range(STEPS):
        computed = torch.ones(1, tokens)
        if step >= T0:
            magnitude = (noise[step - 1] - reference).norm(dim=-1)
            expected = cat_select(magnitude, frequency, labels, adjacency, math.ceil(0.3 * tokens), method.noise_share, method.top_clusters)
            assert sorted(_positions(seen["all"][step][1], seen["computed"][step][1])) == expected[0].tolist(), f"step {step}"
            computed = torch.zeros(1, tokens).scatter(1, expected, 1.0)
        frequency = method.decay * frequency + computed


def test_two_images_without_guidance_and_skip_layer_guidance_keep_their_own_selections(dit):
    """Without guidance a batch of two images is no CFG pair, even when both start from the same latents (PixArt
    cannot say whether it guides); SD3's skip-layer-guidance call carries the conditional half alone."""
    kind, pipe = dit
    latents = torch.randn(1, pipe.transformer.config.in_channels, 16, 24, generator=torch.Generator().manual_seed(2)).repeat(2, 1, 1, 1)
    with prunesched.apply(pipe, cat_schedule()) as handle:
        images, _ = run(kind, pipe, guidance_scale=1.0, num_images_per_prompt=2, latents=latents)
    assert images.shape[0] == 2 and all(r.tokens for r in handle.records[T0:])
    if kind == "sd3":
        with prunesched.apply(pipe, cat_schedule()) as handle:
            images, _ = run(kind, pipe, skip_guidance_layers=[1], skip_layer_guidance_stop=1.0)
        assert images.shape[0] == 1 and all(r.tokens for r in handle.records[T0:])


def test_kmeans_runs_once_per_generation(dit, monkeypatch):
    kind, pipe = dit
    calls = []
    original = cat_pruning.cat_clusters
    monkeypatch.setattr(cat_pruning, "cat_clusters", lambda *a, **k: calls.append(1) or original(*a, **k))
    with prunesched.apply(pipe, cat_schedule()):
        run(kind, pipe)
        assert len(calls) == 1
        run(kind, pipe)
    assert len(calls) == 2


def test_remove_restores_bit_identical_outputs(dit):
    kind, pipe = dit
    before, _ = run(kind, pipe)
    handle = prunesched.apply(pipe, cat_schedule())
    pruned, _ = run(kind, pipe)
    handle.remove()
    after, _ = run(kind, pipe)
    assert (after == before).all() and not (pruned == before).all()


def test_a_pruned_step_on_unchanged_inputs_reproduces_the_full_step(dit):
    """Recomputed tokens attend to cached keys and values of the others, and the others keep their output: when
    nothing changed since the last step, the pruned step must equal the full one. Any misaligned gather or
    scatter, or a per-token modulation (SD3's AdaLayerNormZero, PixArt's ada_norm_single) applied to the wrong
    tokens, would break this."""
    kind, pipe = dit
    inputs = dit_inputs(kind, pipe)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(4)
    timestep = scheduler.timesteps[0].expand(2)
    outputs = []
    with prunesched.apply(pipe, cat_schedule(steps=4, t0=2)) as handle, torch.no_grad():
        for _ in range(3):
            outputs.append(pipe.transformer(timestep=timestep, **inputs).sample)
            latents = inputs["hidden_states"]
            scheduler.step(outputs[-1][:, : latents.shape[1]], scheduler.timesteps[0], latents)  # PixArt also predicts variance
    assert handle.records[2].tokens["transformer"][0] < handle.records[2].tokens["transformer"][1]
    assert torch.allclose(outputs[2], outputs[0], atol=1e-5)


def test_the_first_pruned_step_is_full_until_two_steps_exist(dit):
    kind, pipe = dit
    _, base_latents = run(kind, pipe)
    with prunesched.apply(pipe, cat_schedule(t0=1)) as handle:
        _, latents = run(kind, pipe)
    assert handle.records[1].cache_missing and not handle.records[1].tokens
    assert torch.equal(latents[1], base_latents[1])
    assert handle.records[2].tokens and not handle.records[2].cache_missing


def test_reuse_steps_work_on_a_dit(dit):
    kind, pipe = dit
    steps = tuple(StepPlan("reuse" if i % 2 else "full", 0.0 if i < 2 else PRUNE) for i in range(STEPS))
    with prunesched.apply(pipe, Schedule(steps=steps, method=CatConfig())) as handle:
        images, _ = run(kind, pipe)
    assert [r.performed for r in handle.records] == ["full", "reuse"] * 3
    assert images.shape[1:3] == (32, 48)


@pytest.mark.parametrize(
    "schedule, message",
    [
        (Schedule.uniform(STEPS, prune=0.5, method="sito"), "a DiT pipeline .* prunes with method 'cat'"),
        (Schedule.deepcache(STEPS, interval=2, method=CatConfig()), "of this transformer.s 2 blocks and caches none"),
        (
            Schedule(steps=(StepPlan("full", 0.5),) * STEPS, method=CatConfig(), slots=("transformer_blocks.0",)),
            "a DiT schedule has neither",
        ),
    ],
)
def test_unet_only_schedules_are_refused_on_a_dit(dit, schedule, message):
    _kind, pipe = dit
    with pytest.raises(ScheduleError, match=message):
        prunesched.apply(pipe, schedule)
    assert not hasattr(pipe.transformer, "_prunesched_handle")


def test_fused_projections_are_refused_before_anything_is_patched(dit):
    _kind, pipe = dit
    previous = prunesched.apply(pipe, Schedule.uniform(STEPS))
    pipe.transformer.fuse_qkv_projections()
    try:
        with pytest.raises(UnsupportedModelError, match="unfuse_qkv_projections"):
            prunesched.apply(pipe, cat_schedule())
        assert pipe.transformer._prunesched_handle is previous  # the schedule in place stays
        assert not pipe.transformer.pos_embed._forward_hooks and not pipe.transformer.proj_out._forward_hooks
    finally:
        pipe.transformer.unfuse_qkv_projections()
        previous.remove()


def test_cat_is_refused_on_a_unet_pipeline():
    with pytest.raises(ScheduleError, match="method 'cat' prunes the tokens of a DiT"):
        prunesched.apply(tiny_sd_pipeline(), cat_schedule())


def test_cat_schedule_constructor_has_t0_full_steps_then_one_minus_alpha():
    schedule = Schedule.cat(28)
    assert [s.prune for s in schedule.steps] == [0.0] * 8 + [0.7] * 20 and schedule.method == CatConfig()
    for bad in ({"t0": 29}, {"alpha": 0}, {"alpha": 1.5}):
        with pytest.raises(ScheduleError, match=r"t0|alpha"):
            Schedule.cat(28, **bad)


def test_cat_schedules_round_trip_through_json(tmp_path):
    schedule = cat_schedule(clusters=8, decay=0.25)
    schedule.save(tmp_path / "cat.json")
    loaded = Schedule.load(tmp_path / "cat.json")
    assert loaded == schedule and loaded.method == CatConfig(clusters=8, decay=0.25)
