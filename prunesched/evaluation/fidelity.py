"""Feature-space fidelity through torch-fidelity's extractors: the paired feature distance, FID and KID.

The paired feature distance (the search's default quality objective) compares each accelerated
image with the unaccelerated model's image of the same prompt and seed in the extractor's feature
space, one value per pair, so it is averaged with an interval over images like the pixel metrics of
:mod:`prunesched.evaluation.paired`, and it is stable at a few dozen images. FID and KID compare
two populations; their values are torch-fidelity's own (its feature extractors, its FID and KID
code), so they match what a reader computes with ``fidelity --fid --kid`` on the same images. What
this module adds to them: reference features cached under a key naming everything that affects
them, and a bootstrap interval over the candidate's images (reference fixed), which shows sampling
noise but not FID's well-known bias at small image counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from prunesched.errors import ConfigError
from prunesched.evaluation.generation import key_hash
from prunesched.evaluation.stats import Metrics, interval
from prunesched.models.shapes.judge import register as register_judge

FID = "frechet_inception_distance"
KID = "kernel_inception_distance_mean"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""What torch-fidelity reads from a folder."""
KID_INTERVAL_REFERENCE = 2000
"""Reference images (a seeded subset) behind KID's interval: the kernel matrix is m x m."""

register_judge()  # the shapes model's judge is a feature extractor like Inception


@dataclass(frozen=True)
class FidelitySettings:
    """Which torch-fidelity feature extractor, with which weights.

    ``feature_extractor`` is any name in torch-fidelity's registry, including one a user added with
    ``torch_fidelity.register_feature_extractor`` and ``shapes-judge``, the embedded model's judge
    (:mod:`prunesched.models.shapes.judge`); ``weights`` is a local weight file for clusters
    without internet (torch-fidelity's ``feature_extractor_weights_path``; the Inception file is
    ``weights-inception-2015-12-05-6726825d.pth`` from torch-fidelity's releases).
    """

    feature_extractor: str = "inception-v3-compat"
    weights: str | None = None
    resamples: int = 200

    def __post_init__(self) -> None:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        if self.feature_extractor not in FEATURE_EXTRACTORS_REGISTRY:
            valid = ", ".join(FEATURE_EXTRACTORS_REGISTRY)
            raise ConfigError(f"unknown feature extractor {self.feature_extractor!r}; registered in torch-fidelity: {valid}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ConfigError(f"feature extractor weights {self.weights!r} not found; give the path of a local weight file")


class _Images(Dataset):
    """uint8 (N, 3, H, W) images as the dataset torch-fidelity reads."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class FidelityScorer:
    """One feature extractor, loaded once per worker, scoring many image sets against one cached reference."""

    def __init__(self, settings: FidelitySettings, device: torch.device, cache_dir: Path) -> None:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
        from torch_fidelity.utils import create_feature_extractor

        cls = FEATURE_EXTRACTORS_REGISTRY[settings.feature_extractor]
        self.layers = {m: cls.get_default_feature_layer_for_metric(m) for m in ("fid", "kid")}
        self.settings = settings
        self.options: dict[str, Any] = {
            "cuda": device.type == "cuda",
            "verbose": False,
            "save_cpu_ram": True,
            "cache_root": str(cache_dir / "fidelity"),
            "feature_extractor_weights_path": settings.weights,
        }
        self.extractor = create_feature_extractor(settings.feature_extractor, sorted(set(self.layers.values())), **self.options)

    @property
    def key(self) -> dict[str, Any]:
        """What the extractor contributes to a reference's cache key (other weights are another extractor)."""
        import torch_fidelity

        weights = hashlib.sha256(Path(self.settings.weights).read_bytes()).hexdigest() if self.settings.weights else None
        name = self.settings.feature_extractor
        return {"feature_extractor": name, "layers": self.layers, "weights": weights, "torch_fidelity": torch_fidelity.__version__}

    def reference(self, source: torch.Tensor | Path, key: Mapping[str, Any], size: int) -> Reference:
        """The reference images' features (a uint8 tensor, or a folder, subfolders included, resized and centre-cropped to
        ``size``), cached under ``key``: computed on the first call for a key, read back by every later one on this machine.
        """
        from torch_fidelity.metric_fid import fid_features_to_statistics
        from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

        full_key = {**key, **self.key, "size": size}
        name = f"prunesched-ref-{key_hash(full_key)}"
        root = Path(self.options["cache_root"])
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.json").write_text(json.dumps(full_key, indent=2, sort_keys=True, default=str))
        data = str(source) if isinstance(source, Path) else _Images(source)
        features = extract_featuresdict_from_input_id_cached(
            2,
            self.extractor,
            input2=data,
            input2_cache_name=name,
            samples_resize_and_crop=size,
            samples_find_deep=True,
            **self.options,
        )
        kid = features[self.layers["kid"]]
        subset = np.random.default_rng(0).permutation(len(kid))[:KID_INTERVAL_REFERENCE]
        return Reference(features, fid_features_to_statistics(features[self.layers["fid"]]), kid[np.sort(subset)])

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of generated images (never cached: each candidate's images are new)."""
        from torch_fidelity.utils import extract_featuresdict_from_input_id

        return extract_featuresdict_from_input_id(1, self.extractor, input1=_Images(images), **self.options)

    def pair_features(self, generated: dict[str, torch.Tensor]) -> torch.Tensor:
        """The features :meth:`feature_distance` compares, of images' :meth:`features`: the layer FID reads."""
        return generated[self.layers["fid"]]

    def feature_distance(self, generated: dict[str, torch.Tensor], reference: torch.Tensor) -> np.ndarray:
        """Per image, the cosine distance between its features (:meth:`features`) and its pair's (``reference``, from
        :meth:`pair_features`)."""
        return cosine_distance(self.pair_features(generated), reference)

    def score(self, generated: dict[str, torch.Tensor], reference: Reference, seed: int = 0) -> Metrics:
        """FID and KID of images, given by their :meth:`features`, against the reference, each with a bootstrap interval
        over the images."""
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
        from torch_fidelity.metric_kid import kid_featuresdict_to_metric

        fid_gen = generated[self.layers["fid"]]
        n = len(fid_gen)
        fid = fid_statistics_to_metric(fid_features_to_statistics(fid_gen), reference.fid_statistics, False)[FID]
        subset = min(1000, n, len(reference.features[self.layers["kid"]]))
        kid = kid_featuresdict_to_metric(generated, reference.features, self.layers["kid"], kid_subset_size=subset, verbose=False)[KID]
        resamples = self.settings.resamples
        return {
            "fid": {
                "value": float(fid),
                "n": n,
                "ci": interval(fid_resampler(fid_gen, reference.fid_statistics), n, seed, resamples, float(fid)),
            },
            "kid": {
                "value": float(kid),
                "n": n,
                "ci": interval(kid_resampler(generated[self.layers["kid"]], reference.kid_subset), n, seed, resamples, float(kid)),
            },
        }


@dataclass(frozen=True)
class Reference:
    """Reference features, with what every candidate's scoring needs of them computed once."""

    features: dict[str, torch.Tensor]
    fid_statistics: dict[str, np.ndarray]
    kid_subset: torch.Tensor


def cosine_distance(features: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per row, ``1 - cos`` of the angle between ``features[i]`` and ``reference[i]``: 0 for the same direction, up to 2.

    The angle rather than the Euclidean distance, so the value does not depend on an extractor's
    feature scale and reads the same for the judge and for Inception.
    """
    if features.shape != reference.shape:
        raise ConfigError(f"features of shape {tuple(features.shape)} and reference of shape {tuple(reference.shape)} must match")
    cos = F.cosine_similarity(features.double(), reference.double(), dim=1, eps=1e-12)
    return (1 - cos).clamp(min=0).numpy()


def fid_resampler(generated: torch.Tensor, reference: Mapping[str, np.ndarray]) -> Any:
    """FID of the generated images picked by an index array against reference statistics ``{"mu", "sigma"}``.

    The non-zero eigenvalues of ``S_gen @ S_ref`` are those of the n x n matrix ``X S_ref X^T / (n - 1)``
    (X: the picked, centred features), so each resample costs an n x n eigendecomposition instead of a
    d x d matrix root (d = 2048 for Inception): the cheaper way for the image counts a search uses.
    """
    features = generated.double().numpy()
    mu_ref, sigma_ref = np.asarray(reference["mu"], dtype=float), np.asarray(reference["sigma"], dtype=float)
    cross = features @ sigma_ref @ features.T
    gram = features @ features.T
    trace_ref = float(np.trace(sigma_ref))

    def fid(indices: np.ndarray) -> float:
        n = len(indices)
        centre = np.eye(n) - 1.0 / n

        def centred(matrix: np.ndarray) -> np.ndarray:
            return centre @ matrix[np.ix_(indices, indices)] @ centre / (n - 1)

        mean_diff = features[indices].mean(axis=0) - mu_ref
        root_trace = np.sqrt(np.clip(np.linalg.eigvalsh(centred(cross)), 0, None)).sum()
        return float(mean_diff @ mean_diff + np.trace(centred(gram)) + trace_ref - 2 * root_trace)

    return fid


def kid_resampler(generated: torch.Tensor, reference: torch.Tensor) -> Any:
    """The unbiased MMD² with KID's cubic polynomial kernel, of the generated images picked by an index array."""
    gen, ref = generated.double().numpy(), reference.double().numpy()
    d = gen.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1) ** 3

    k_gg, k_gr, k_rr = kernel(gen, gen), kernel(gen, ref), kernel(ref, ref)
    m = len(ref)
    ref_term = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))

    def kid(indices: np.ndarray) -> float:
        n = len(indices)
        picked = k_gg[np.ix_(indices, indices)]
        return float((picked.sum() - np.trace(picked)) / (n * (n - 1)) + ref_term - 2 * k_gr[indices].mean())

    return kid
