"""Paired metrics: hand-computed MSE and PSNR, scikit-image's SSIM, LPIPS only from local weights."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from prunesched.errors import ConfigError
from prunesched.evaluation.paired import lpips_scorer, lpips_unavailable_reason, mse, psnr, ssim


def random_images(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def skimage_ssim(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                a.permute(1, 2, 0).numpy() / 255,
                b.permute(1, 2, 0).numpy() / 255,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=2,
            )
            for a, b in zip(images, reference)
        ]
    )


def test_mse_and_psnr_of_identical_images_are_0_and_100_db():
    images = random_images(3, 8, 8, seed=0)
    np.testing.assert_array_equal(mse(images, images.clone()), np.zeros(3))
    np.testing.assert_array_equal(psnr(images, images.clone()), np.full(3, 100.0))


def test_mse_and_psnr_of_known_perturbations():
    reference = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images = reference.clone()
    images[0] = 51  # every pixel off by 0.2
    images[1, 2, 3, 1] = 255  # one of 48 values off by 1
    values = mse(images, reference)
    assert values.dtype == np.float64 and values.shape == (2,)
    np.testing.assert_allclose(values, [0.04, 1 / 48], rtol=1e-12)
    np.testing.assert_allclose(psnr(images, reference), [10 * np.log10(25), 10 * np.log10(48)], rtol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 24)])
def test_ssim_matches_scikit_image_on_random_images(height, width):
    images = random_images(20, height, width, seed=1)  # more than one chunk
    reference = random_images(20, height, width, seed=2)
    values = ssim(images, reference)
    assert values.dtype == np.float64 and values.shape == (20,)
    np.testing.assert_allclose(values, skimage_ssim(images, reference), rtol=0, atol=1e-6)


def test_ssim_matches_scikit_image_on_structured_images():
    gradient = torch.linspace(0, 255, 48).round().to(torch.uint8)
    reference = torch.stack([gradient.expand(36, 48), gradient.flip(0).expand(36, 48), gradient[:36, None].expand(36, 48)])
    noise = torch.randn(3, 36, 48, generator=torch.Generator().manual_seed(3)) * 20
    images = (reference + noise).clamp(0, 255).round().to(torch.uint8)
    values = ssim(images[None], reference[None])
    assert 0 < values[0] < 1
    np.testing.assert_allclose(values, skimage_ssim(images[None], reference[None]), rtol=0, atol=1e-6)


def test_ssim_of_identical_images_is_1():
    images = torch.cat([random_images(2, 16, 20, seed=4), torch.full((1, 3, 16, 20), 128, dtype=torch.uint8)])
    np.testing.assert_allclose(ssim(images, images.clone()), np.ones(3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", [mse, psnr, ssim])
def test_a_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(ConfigError, match=r"\(2, 3, 16, 16\).*\(2, 3, 16, 12\)"):
        metric(random_images(2, 16, 16, seed=0), random_images(2, 16, 12, seed=0))


def test_non_uint8_images_are_refused():
    images = random_images(1, 16, 16, seed=0)
    with pytest.raises(ConfigError, match="uint8"):
        mse(images.float(), images.float())


def test_ssim_refuses_images_smaller_than_its_window():
    images = random_images(1, 10, 12, seed=0)
    with pytest.raises(ConfigError, match=r"at least 11x11.*got 10x12"):
        ssim(images, images)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty torch hub directory, with every network connection failing the test."""

    def no_network(*args, **kwargs):
        raise AssertionError("LPIPS tried to reach the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield tmp_path
    torch.hub.set_dir(previous)


def test_lpips_is_skipped_without_alexnet_weights(hub_dir):
    assert lpips_scorer() is None
    reason = lpips_unavailable_reason()
    assert reason is not None and str(hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth") in reason


@pytest.mark.filterwarnings("ignore:.*deprecated:UserWarning")  # lpips asks torchvision for pretrained=True
def test_lpips_scores_pairs_from_local_weights(hub_dir):
    import lpips
    import torchvision

    # A random-init stand-in for torchvision's AlexNet ImageNet checkpoint: the real weights cannot
    # be downloaded here. It sits under the exact name torchvision looks for, so nothing is fetched.
    (hub_dir / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert lpips_unavailable_reason() is None
    score = lpips_scorer()
    assert score is not None

    images = random_images(2, 64, 64, seed=5)
    reference = random_images(2, 64, 64, seed=6)
    np.testing.assert_array_equal(score(images, images.clone()), np.zeros(2))
    values = score(images, reference)
    assert values.dtype == np.float64 and values.shape == (2,) and np.all(values > 0)
    with torch.no_grad():
        direct = lpips.LPIPS(net="alex", verbose=False)(images / 127.5 - 1, reference / 127.5 - 1).flatten().numpy()
    np.testing.assert_allclose(values, direct, rtol=1e-5)
