"""Paired fidelity: how far each accelerated image is from the unaccelerated model's image.

Both images of a pair come from the same prompt and the same seed, so they share everything but
the schedule (common random numbers). Scoring the pair directly, rather than comparing two
populations (FID), leaves little variance from the prompts and seeds themselves, and a few
hundred images are enough to tell schedules apart. Every metric returns one value per image, as
float64, so callers can bootstrap over images.

Inputs are uint8 tensors of shape (N, 3, H, W): ``images`` from the schedule, ``reference`` from
the unaccelerated model, pair i at index i.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from prunesched.errors import ConfigError

# Images per chunk: keeps float64 intermediates bounded when callers pass thousands of images.
CHUNK = 16
MSE_FLOOR = 1e-10
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # radius int(3.5 * 1.5 + 0.5) = 5, as scikit-image's gaussian_weights=True
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check(images: torch.Tensor, reference: torch.Tensor) -> None:
    for tensor in (images, reference):
        if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ConfigError(f"paired metrics take uint8 images of shape (N, 3, H, W), got {tensor.dtype} of shape {tuple(tensor.shape)}")
    if images.shape != reference.shape:
        raise ConfigError(f"images of shape {tuple(images.shape)} and reference of shape {tuple(reference.shape)} must have the same shape")


def _per_image(metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """``metric`` on [0, 1]-scaled float64 chunks, concatenated into one value per image."""
    _check(images, reference)
    values = [metric(images[i : i + CHUNK].double() / 255, reference[i : i + CHUNK].double() / 255) for i in range(0, len(images), CHUNK)]
    return torch.cat(values).cpu().numpy() if values else np.zeros(0)


def _mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).square().mean(dim=(1, 2, 3))


def mse(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per-image mean squared error of [0, 1]-scaled pixels."""
    return _per_image(_mse, images, reference)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB for data range 1.

    The MSE is floored at 1e-10, so identical images score 100 dB rather than infinity: bootstrap
    means and intervals need finite values.
    """
    return 10 * np.log10(1 / np.maximum(mse(images, reference), MSE_FLOOR))


def _gaussian_window(device: torch.device) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    weights = torch.exp(-0.5 * (taps / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    window = _gaussian_window(x.device)
    # Filtering only where the window fits equals scikit-image's reflect-filter-then-crop.
    stack = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    stack = F.conv2d(stack, window.view(1, 1, -1, 1))
    stack = F.conv2d(stack, window.view(1, 1, 1, -1))
    ux, uy, uxx, uyy, uxy = stack.reshape(5, n, c, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = SSIM_K1**2
    c2 = SSIM_K2**2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def ssim(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) of [0, 1]-scaled pixels, averaged over the three channels.

    Gaussian window (sigma 1.5, 11 taps), K1 0.01, K2 0.03, population covariance, mean over the
    pixels whose window lies inside the image: the values of scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1.0)``.
    """
    _check(images, reference)
    height, width = images.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise ConfigError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its window), got {height}x{width}")
    return _per_image(_ssim, images, reference)


def alexnet_checkpoint() -> Path:
    """Where torchvision looks for AlexNet's ImageNet weights, which LPIPS(net="alex") builds on."""
    from torchvision.models import AlexNet_Weights

    name = os.path.basename(urlparse(AlexNet_Weights.IMAGENET1K_V1.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_unavailable_reason() -> str | None:
    """Why LPIPS cannot be computed on this machine without a download, or None if it can."""
    if importlib.util.find_spec("lpips") is None:
        return "LPIPS skipped: the lpips package is not installed (pip install lpips==0.1.4)"
    checkpoint = alexnet_checkpoint()
    if not checkpoint.is_file():
        return (
            f"LPIPS skipped: AlexNet weights not found at {checkpoint} "
            "(torchvision downloads them there; copy them there on offline machines)"
        )
    return None


def lpips_scorer(device: torch.device | str = "cpu") -> Callable[[torch.Tensor, torch.Tensor], np.ndarray] | None:
    """A per-image LPIPS (AlexNet, v0.1) scorer, or None where it would need a download.

    Clusters have no internet, so this never downloads: it returns None when the lpips package or
    torchvision's AlexNet checkpoint is missing; ``lpips_unavailable_reason`` says which.
    """
    if lpips_unavailable_reason() is not None:
        return None
    import lpips

    with warnings.catch_warnings():
        # lpips 0.1.4 asks torchvision for AlexNet with the deprecated ``pretrained=True``.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", verbose=False).to(device)

    def score(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
        """Per-image LPIPS distance; 0 for identical images."""
        _check(images, reference)
        values = []
        with torch.inference_mode():
            for i in range(0, len(images), CHUNK):
                x = images[i : i + CHUNK].to(device, torch.float32) / 127.5 - 1
                y = reference[i : i + CHUNK].to(device, torch.float32) / 127.5 - 1
                values.append(model(x, y).flatten().double().cpu())
        return torch.cat(values).numpy() if values else np.zeros(0)

    return score
