"""The judge: a small classifier of the shapes data that scores the embedded model's images.

It reads the main object's shape and colour (and the rest of the scene) off an image, which gives
a "does the image match its caption" accuracy, and its penultimate layer is registered with
torch-fidelity as the ``shapes-judge`` feature extractor, so FID and KID on the embedded model go
through exactly the code path Inception takes on real models.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from prunesched.errors import ConfigError
from prunesched.models.shapes.data import COLOURS, SHAPES, SIZES, TEXTURES, Scene, main_object

EXTRACTOR = "shapes-judge"
FEATURES = 128
HEADS = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "background": tuple(COLOURS),
    "texture": TEXTURES,
    "objects": ("1", "2"),
}
"""What the judge predicts: the main object, the background, and how many objects there are."""


def labels(scene: Scene) -> dict[str, int]:
    """The class index of each head for ``scene``."""
    values = {
        "shape": scene.shape,
        "colour": scene.colour,
        "size": scene.size,
        "background": scene.background,
        "texture": scene.texture,
        "objects": "1" if scene.second is None else "2",
    }
    return {head: HEADS[head].index(value) for head, value in values.items()}


class Judge(nn.Module):
    """A five-layer CNN on 64-pixel images; any other size is resized to 64 first."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate([(3, 32), (32, 64), (64, 128), (128, 128), (128, FEATURES)]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
            if i < 4:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({head: nn.Linear(FEATURES, len(classes)) for head, classes in HEADS.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate features of float images in [0, 1], shape (batch, 3, H, W)."""
        if images.shape[-2:] != (64, 64):
            images = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        return self.body(images * 2 - 1).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head."""
        features = self.features(images)
        return {head: layer(features) for head, layer in self.heads.items()}

    def read(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head of uint8 images (N, 3, H, W), wherever they are: they are moved to the judge's device
        (generated images are kept on the CPU, the judge of an evaluator on a GPU lives there)."""
        return self(images.to(next(self.parameters()).device).float() / 255)


def load_judge(path: str | Path | None = None) -> Judge:
    """The shipped judge (or the one at ``path``), in eval mode."""
    from safetensors.torch import load_file

    from prunesched.models.shapes import JUDGE_FILE

    path = Path(path or JUDGE_FILE)
    if not path.is_file():
        raise ConfigError(f"judge weights {str(path)!r} not found; reinstall prunesched or run experiments/train_shapes.py")
    judge = Judge()
    judge.load_state_dict(load_file(str(path)))
    return judge.eval()


@torch.no_grad()
def caption_matches(judge: Judge, images: torch.Tensor, captions: list[str]) -> list[bool] | None:
    """Per image, whether the judge reads the main object as the caption's shape and colour.

    ``images`` are uint8 (N, 3, H, W); None when a caption is not a shapes caption.
    """
    expected = [main_object(c) for c in captions]
    if any(e is None for e in expected):
        return None
    logits = judge.read(images)
    shapes, colours = logits["shape"].argmax(dim=1).tolist(), logits["colour"].argmax(dim=1).tolist()
    return [(HEADS["shape"][s], HEADS["colour"][c]) == e for s, c, e in zip(shapes, colours, expected)]


class JudgeFeatures(FeatureExtractorBase):
    """torch-fidelity's view of the judge: uint8 images in, the judge's features out."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **_: object):
        super().__init__(name, features_list)
        self.judge = load_judge(feature_extractor_weights_path)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.judge.features(x.float() / 255),)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)


def register() -> None:
    """Make ``shapes-judge`` a torch-fidelity feature extractor (once; later calls do nothing)."""
    if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(EXTRACTOR, JudgeFeatures)
