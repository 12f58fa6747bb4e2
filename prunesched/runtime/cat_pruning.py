"""CAT pruning in a DiT (``SD3Transformer2DModel``, ``PixArtTransformer2DModel``): recompute a fraction of
the image tokens at each pruned step and let the others reuse their previous-step values (Algorithm 1).

At a pruned step the selected image tokens are gathered right after the patch embedding, so
every transformer block (attention, feed-forward, and their adaptive norms, PixArt's
``ada_norm_single`` included, which act per token) runs on them alone. In self-attention the
selected queries attend to all image tokens: the keys and values of the unselected ones are
the previous step's. After the output projection the unselected tokens take their previous
output. SD3's text tokens are always computed. A step that does not prune computes everything
and refreshes every cache.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn

from prunesched.errors import ScheduleError, UnsupportedModelError
from prunesched.runtime.methods import CatConfig
from prunesched.runtime.patcher import Patcher
from prunesched.runtime.pruner import Denoiser, PatchTarget, Pruner
from prunesched.runtime.schedule import Schedule
from prunesched.runtime.state import RunState
from prunesched.runtime.tokens.cat import cat_clusters, cat_select

RECORD_NAME = "transformer"
"""The key of a pruned step's ``StepRecord.tokens``: ``(image tokens recomputed, all image tokens)``."""


@dataclass
class CatStream:
    """What one stream of transformer calls carries from step to step of a generation.

    ``outputs``: the output tokens of the last two computed steps (the model output before
    unpatchify, ``(B, N, p*p*C)``); ``reference``: ``n_t0`` of the selection samples; ``labels``
    and ``adjacency``: the clusters; ``frequency``: the EWMA selection frequency ``(B, N)``;
    ``keys_values``: each self-attention's last keys and values; ``index``: the tokens this call
    computes ``(B, k)``, or None when it computes all; ``pairs``: whether the batch is a
    classifier-free-guidance pair, decided at the first pruned step and kept for the generation.
    """

    outputs: deque[Tensor] = field(default_factory=lambda: deque(maxlen=2))
    reference: Tensor | None = None
    labels: Tensor | None = None
    adjacency: Tensor | None = None
    frequency: Tensor | None = None
    keys_values: dict[str, Tensor] = field(default_factory=dict)
    index: Tensor | None = None
    pairs: bool | None = None


def self_attentions(transformer: Denoiser) -> dict[str, Attention]:
    """The attention modules whose keys and values come from the image tokens (SD3's joint and dual
    attention, PixArt's ``attn1``); cross-attention reads only the text and needs no cache."""
    return {
        name: module
        for name, module in transformer.transformer_blocks.named_modules(prefix="transformer_blocks")
        if isinstance(module, Attention) and not module.is_cross_attention
    }


def check_cat_pipeline(pipe: Any, transformer: Denoiser) -> None:
    """Refuse, before anything is patched, what CAT pruning cannot run correctly."""
    fused = [name for name, module in self_attentions(transformer).items() if getattr(module, "fused_projections", False)]
    if fused:
        raise UnsupportedModelError(
            f"CAT pruning needs separate key and value projections, but {fused[0]} has fused ones; "
            "call transformer.unfuse_qkv_projections() before prunesched.apply"
        )
    if getattr(pipe, "controlnet", None) is not None:
        raise UnsupportedModelError(
            f"CAT pruning does not run {type(pipe).__name__}: its ControlNet adds a residual to every image "
            "token, but a pruned step's blocks see only the recomputed ones; use the pipeline without ControlNet"
        )


def check(target: PatchTarget, schedule: Schedule, method: CatConfig) -> None:
    """Refuse a UNet, and (when the schedule prunes) what CAT pruning cannot run correctly."""
    if target.unet is not None:
        raise ScheduleError("method 'cat' prunes the tokens of a DiT (SD3, PixArt-Σ); for a UNet pipeline use sito, dato, random or atedm")
    if schedule.prunes and isinstance(target.denoiser, FluxTransformer2DModel):
        raise ScheduleError(
            "method 'cat' prunes the tokens of SD3 and PixArt-Σ transformers; on Flux use block-cache and reuse steps without pruning"
        )
    if schedule.prunes:
        check_cat_pipeline(target.pipe, target.denoiser)


def install(patcher: Patcher, target: PatchTarget, state: RunState, method: CatConfig) -> None:
    """Hook the patch embedding (gather), the output projection (scatter) and each self-attention's key and value projections."""
    transformer = target.denoiser
    config = transformer.config
    run = _CatRun(state, method, config.patch_size, config.in_channels, config.out_channels)
    patcher.add_forward_hook(transformer.pos_embed, run.gather)
    patcher.add_forward_hook(transformer.proj_out, run.scatter)
    for name, attention in self_attentions(transformer).items():
        for projection, suffix in ((attention.to_k, "k"), (attention.to_v, "v")):
            patcher.add_forward_hook(projection, partial(run.refresh, f"{name}.{suffix}"))


CAT = Pruner(check, install)


class _CatRun:
    def __init__(self, state: RunState, method: CatConfig, patch: int, noise_channels: int, out_channels: int) -> None:
        self.state = state
        self.method = method
        self.patch = patch
        self.noise_channels = noise_channels
        self.out_channels = out_channels

    def stream(self) -> CatStream:
        """The current stream's CAT state; the run state drops its caches at every new generation."""
        return self.state.cache().setdefault("cat", CatStream())

    def gather(self, _module: nn.Module, args: tuple[Any, ...], tokens: Tensor) -> Tensor | None:
        """After the patch embedding: keep only the tokens this step recomputes."""
        stream, state = self.stream(), self.state
        stream.index = None
        if state.prune == 0:
            return None
        if len(stream.outputs) < 2:  # n_t0 and a later output are needed to rank tokens: compute this step in full
            state.record_missing()
            return None
        latent = args[0]
        grid = (latent.shape[-2] // self.patch, latent.shape[-1] // self.patch)
        total = tokens.shape[1]
        count = total - int(state.prune * total)
        if stream.pairs is None:
            stream.pairs = _cfg_pair(state, latent)
        rows = slice(latent.shape[0] // 2, None) if stream.pairs else slice(None)  # diffusers batches CFG as [uncond, cond]
        with state.selecting():
            selection = self._select(stream, rows, grid, count)
        stream.index = torch.cat([selection, selection]) if stream.pairs else selection
        state.token_index = stream.index
        state.record_tokens(RECORD_NAME, count, total)
        return tokens.gather(1, expand_index(stream.index, tokens.shape[-1]))

    def refresh(self, key: str, _module: nn.Module, _args: tuple[Any, ...], projected: Tensor) -> Tensor:
        """A self-attention's keys or values: this step's for the recomputed tokens, the previous step's for the rest."""
        stream = self.stream()
        if stream.index is not None:
            projected = stream.keys_values[key].scatter(1, expand_index(stream.index, projected.shape[-1]), projected)
        stream.keys_values[key] = projected
        return projected

    def scatter(self, _module: nn.Module, _args: tuple[Any, ...], output: Tensor) -> Tensor:
        """After the output projection: every token's output, the unselected ones from the previous step."""
        stream = self.stream()
        if stream.index is None:
            computed: Tensor | float = 1.0
        else:
            output = stream.outputs[-1].scatter(1, expand_index(stream.index, output.shape[-1]), output)
            computed = torch.zeros(output.shape[:2], device=output.device).scatter_(1, stream.index, 1.0)
        previous = stream.frequency if stream.frequency is not None else torch.zeros(output.shape[:2], device=output.device)
        stream.frequency = self.method.decay * previous + computed
        stream.outputs.append(output)
        return output

    def _select(self, stream: CatStream, rows: slice, grid: tuple[int, int], count: int) -> Tensor:
        method, latest = self.method, self._noise(stream.outputs[-1][rows])
        if stream.reference is None:  # the first pruned step (Algorithm 2, i = t0 + 1): fix n_t0 and cluster
            stream.reference = self._noise(stream.outputs[0][rows])
            stream.labels, stream.adjacency = cat_clusters(
                latest - stream.reference, grid, method.clusters, method.kmeans_iterations, method.position_weight
            )
        assert stream.labels is not None and stream.adjacency is not None and stream.frequency is not None
        magnitude = (latest - stream.reference).norm(dim=-1)
        return cat_select(
            magnitude, stream.frequency[rows], stream.labels, stream.adjacency, count, method.noise_share, method.top_clusters
        )

    def _noise(self, output: Tensor) -> Tensor:
        """The predicted noise of output tokens ``(B, N, p*p*C)``, in fp32: PixArt-Σ also predicts a variance per
        channel (``C = 2 * in_channels``), which the pipeline discards and which is no part of the noise."""
        if self.out_channels == 2 * self.noise_channels:
            output = output.unflatten(-1, (-1, self.out_channels))[..., : self.noise_channels].flatten(-2)
        return output.float()


def expand_index(index: Tensor, channels: int) -> Tensor:
    """Token indices ``(B, k)`` as the index of a gather or scatter over ``(B, N, channels)`` tokens."""
    return index[..., None].expand(-1, -1, channels)


def _cfg_pair(state: RunState, latent: Tensor) -> bool:
    """Whether a stream's batch is a classifier-free-guidance pair ``[uncond, cond]``: only the first call of an
    iteration can be (SD3's skip-layer guidance adds a call on the conditional half alone); where the pipeline
    does not say whether it guides (PixArt), a pair is two halves with the very same latents (one host sync)."""
    if state.stream != 0 or latent.shape[0] % 2:
        return False
    half = latent.shape[0] // 2
    return state.cfg if state.cfg is not None else torch.equal(latent[:half], latent[half:])
