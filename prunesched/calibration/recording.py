"""Recording a calibration: the full model run on a few prompts with forward hooks, its changes kept per iteration.

Nothing is patched and nothing is skipped: every loop iteration runs the whole network. Hooks keep, for the
current iteration, each watched block's output, the first block's residual, the residual of the whole stack of
blocks and the model output (a pipeline that runs guidance as two calls gives two of each, joined along the
batch). When the iteration ends they are compared with the previous iteration's and dropped, so two
iterations of features are held at a time. The prompts run as one batch; row ``r`` of a batch belongs to prompt
``r % prompts`` (guidance doubles the batch as [unconditional, conditional]), which keeps every signal per prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from prunesched.calibration.document import SIGNALS, Calibration
from prunesched.errors import UnsupportedModelError
from prunesched.evaluation.generation import ImageGenerator, step_callback
from prunesched.evaluation.prompts import PromptSpec
from prunesched.evaluation.settings import PipelineSettings
from prunesched.models.loading import model_fingerprint
from prunesched.runtime.block_caching import block_inputs, block_outputs
from prunesched.runtime.dit_layout import dit_blocks, is_joint
from prunesched.runtime.patch import find_denoiser
from prunesched.runtime.unet_layout import branch_inputs, unet_blocks

DEFAULT_PROMPTS = 4
"""Prompts a calibration runs by default: the signals vary little between prompts (the spread is kept to show it)."""

Progress = Callable[[int, int], None]
"""Told ``(iterations done, loop length)`` after each loop iteration."""

Watch = Callable[[tuple[Any, ...], dict[str, Any], Any], Tensor]
"""What a hook keeps of one forward call: a tensor made from its positional arguments, keyword arguments and output."""


def calibration_generator(
    model: str,
    prompts: int = DEFAULT_PROMPTS,
    num_inference_steps: int = 20,
    guidance_scale: float = 7.5,
    seed: int = 0,
    prompt_set: PromptSpec | None = None,
) -> ImageGenerator:
    """The generator a calibration of ``model`` (a built-in name, a diffusers folder or a cached hub id) runs for
    :func:`record`: its pipeline on ``prompts`` prompts of ``prompt_set`` (default: the shapes captions), image i with
    seed ``seed + i``, drawn as an evaluator with these settings draws them
    (:class:`~prunesched.evaluation.settings.PipelineSettings`), all in one batch."""
    settings = PipelineSettings(
        model=model,
        prompts=prompt_set or {"kind": "shapes"},
        images=prompts,
        seed=seed,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        batch_size=prompts,
    )
    return ImageGenerator(settings.pipeline(), settings.spec())


def record(generator: ImageGenerator, progress: Progress | None = None) -> Calibration:
    """Run ``generator``'s batch once, unaccelerated, and return what the hooks saw as a :class:`Calibration`."""
    spec, pipe = generator.spec, generator.pipe
    probes = _Probes(find_denoiser(pipe), len(spec.prompts), generator.loop_length)
    handles = probes.install()
    try:
        generator.first_batch(None, **step_callback(pipe, lambda i: probes.end_iteration(i, progress)))
    finally:
        for handle in handles:
            handle.remove()
    return Calibration(
        model=spec.model,
        fingerprint=model_fingerprint(spec.model),
        architecture="unet" if probes.unet else "dit",
        scheduler=type(pipe.scheduler).__name__,
        num_inference_steps=spec.num_inference_steps,
        loop_length=generator.loop_length,
        guidance_scale=spec.guidance_scale,
        seed=spec.seeds[0],
        prompts=spec.prompts,
        timesteps=tuple(float(t) for t in pipe.scheduler.timesteps),
        blocks=tuple(probes.order),
        branches=tuple(probes.branches),
        signals=probes.signals,
    )


class _Probes:
    """The forward hooks of a calibration and the signals they have filled in so far."""

    def __init__(self, denoiser: nn.Module, prompts: int, loop_length: int) -> None:
        self.unet = isinstance(denoiser, UNet2DConditionModel)
        self.prompts, self.loop_length = prompts, loop_length
        self.denoiser = denoiser
        self.watched: dict[str, tuple[nn.Module, Watch]] = {}  # key -> (module, what its hook keeps)
        if self.unet:
            self.branches = branch_inputs(denoiser)
            blocks = unet_blocks(denoiser)
            for name in dict.fromkeys(blocks + self.branches):
                self._watch(f"block:{name}", name, lambda _a, _k, out: _first_tensor(out))
            self._watch("first_block", "down_blocks.0.resnets.0", lambda args, _k, out: _residual(out, args[0]))
            self._watch("head", blocks[0], lambda args, kwargs, _o: kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])
            self._watch("tail", blocks[-1], lambda _a, _k, out: _first_tensor(out))
        else:
            self.branches = []
            joint = is_joint(denoiser)
            names = [name for name, _ in dit_blocks(denoiser)]
            for name in names:
                self._watch(f"block:{name}", name, lambda _a, _k, out: block_outputs(joint, out)[0])
            self._watch(
                "first_block",
                names[0],
                lambda args, kwargs, out: _residual(block_outputs(joint, out)[0], block_inputs(joint, args, kwargs)[0]),
            )
            self._watch("head", names[0], lambda args, kwargs, _o: block_inputs(joint, args, kwargs)[0])
            self._watch("tail", names[-1], lambda _a, _k, out: block_outputs(joint, out)[0])
        self.watched["output"] = (denoiser, lambda _a, _k, out: _first_tensor(out))
        self.order: list[str] = []  # the blocks in the order their forward ends, as first seen
        self.current: dict[str, list[Tensor]] = {}
        self.previous: dict[str, Tensor] = {}
        blocks_watched = sum(key.startswith("block:") for key in self.watched)
        shapes = {name: (prompts, loop_length, blocks_watched) if name == "blocks" else (prompts, loop_length) for name in SIGNALS}
        self.signals = {name: np.full(shape, np.nan) for name, shape in shapes.items()}

    def install(self) -> list[Any]:
        """Register every hook; returns their handles."""
        return [module.register_forward_hook(self._hook(key, keep), with_kwargs=True) for key, (module, keep) in self.watched.items()]

    def end_iteration(self, iteration: int, progress: Progress | None) -> None:
        """Compare this iteration's tensors with the previous iteration's, keep the signals, and move on."""
        now = {key: torch.cat(parts) for key, parts in self.current.items()}
        now["residual"] = now.pop("tail") - now.pop("head")
        self.current = {}
        if self.previous:
            for column, name in enumerate(self.order):
                key = f"block:{name}"
                self.signals["blocks"][:, iteration, column] = self._change(now[key], self.previous[key])
            self.signals["first_block"][:, iteration] = self._change(now["first_block"], self.previous["first_block"])
            self.signals["output"][:, iteration] = self._change(now["output"], self.previous["output"])
            self.signals["magnitude_ratio"][:, iteration] = self._ratio(now["residual"], self.previous["residual"])
        self.previous = now
        if progress is not None:
            progress(iteration + 1, self.loop_length)

    def _watch(self, key: str, path: str, keep: Watch) -> None:
        self.watched[key] = (self.denoiser.get_submodule(path), keep)

    def _hook(self, key: str, keep: Watch) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            name = key.removeprefix("block:")
            if name != key and name not in self.order:
                self.order.append(name)
            self.current.setdefault(key, []).append(keep(args, kwargs, output).detach().to(torch.float32, copy=True))

        return hook

    def _change(self, now: Tensor, before: Tensor) -> np.ndarray:
        """Per prompt, ``mean |now - before| / mean |before|``: the relative L1 change FirstBlockCache and TeaCache use."""
        return (self._per_prompt((now - before).abs().flatten(1).sum(1)) / self._per_prompt(before.abs().flatten(1).sum(1))).numpy()

    def _ratio(self, now: Tensor, before: Tensor) -> np.ndarray:
        """Per prompt, the mean over positions of ``|now| / |before|``, norms over channels: MagCache's magnitude ratio."""
        ratio = (_channel_norm(now) / (_channel_norm(before) + 1e-8)).flatten(1).mean(1)
        return (self._per_prompt(ratio) * self.prompts / len(ratio)).numpy()

    def _per_prompt(self, rows: Tensor) -> Tensor:
        """Per-row values summed over the rows of each prompt (row r belongs to prompt r % prompts)."""
        return rows.view(-1, self.prompts).sum(0).cpu().double()


def _first_tensor(output: Any) -> Tensor:
    """The main tensor of a module's output: itself, a tuple's first entry (a UNet down block's hidden states), or ``.sample``."""
    if isinstance(output, Tensor):
        return output
    return output[0] if isinstance(output, (tuple, list)) else output.sample


def _residual(output: Tensor, inputs: Tensor) -> Tensor:
    """What a block added to its input; refused in one line where the block changes the shape."""
    if output.shape != inputs.shape:
        raise UnsupportedModelError(
            f"the first block changes its input's shape {tuple(inputs.shape)} to {tuple(output.shape)}, so it has no residual"
        )
    return output - inputs


def _channel_norm(x: Tensor) -> Tensor:
    """The norm over channels at every position: dim 1 of a feature map (B, C, H, W), the last dim of tokens (B, N, C)."""
    return torch.linalg.vector_norm(x, dim=1 if x.ndim == 4 else -1)
