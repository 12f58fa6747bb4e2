"""Hand-made calibrations: signals chosen so that every threshold rule's decisions can be worked out by hand."""

from __future__ import annotations

import numpy as np

from prunesched.calibration.document import Calibration


def made(
    first_block: list[float], output: list[float], ratio: list[float], architecture: str = "unet", model: str = "tiny-sd"
) -> Calibration:
    """A one-prompt calibration of ``model`` whose signals are the given per-iteration values (iteration 0 is never read);
    two blocks, each changing like the output."""
    n = len(first_block)
    rows = {"first_block": first_block, "output": output, "magnitude_ratio": ratio}
    signals = {name: np.array([[np.nan, *values[1:]]]) for name, values in rows.items()}
    signals["blocks"] = np.repeat(signals["output"][:, :, None], 2, axis=2)
    return Calibration(
        model=model,
        fingerprint=model,  # a built-in test pipeline's fingerprint is its name
        architecture=architecture,
        scheduler="PNDMScheduler",
        num_inference_steps=n - 1,
        loop_length=n,
        guidance_scale=7.5,
        seed=0,
        prompts=("a red circle",),
        timesteps=tuple(float(1000 - 100 * i) for i in range(n)),
        blocks=("down_blocks.0", "up_blocks.0"),
        branches=("up_blocks.0",) if architecture == "unet" else (),
        signals=signals,
    )
