"""Typed configurations of the token-pruning methods a schedule can name.

Each dataclass is the ``method`` object of a schedule document: its fields are the method's
parameters, their defaults are the ones we recommend, and every difference from a paper or
its public code is an explicit field rather than an accident.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from prunesched.errors import ScheduleError

Recovery = Literal["kept", "base"]
AlignSource = Literal["cond", "uncond"]


@dataclass(frozen=True)
class TokenMethod:
    """What every token-pruning method has: a name, a private random seed, and the largest ratio it accepts.

    Attributes:
        seed: seed of the method's private random generator, reset at the start of every
            generation, so pruning never consumes the pipeline's own random stream.
    """

    name: ClassVar[str] = ""
    seed: int = 0

    def __post_init__(self) -> None:
        self._check()

    @property
    def max_prune(self) -> float:
        """The largest prune ratio this method accepts."""
        raise NotImplementedError

    def describe_limit(self) -> str:
        """The accepted prune ratios, for error messages."""
        return f"method {self.name!r} accepts 0 to {self.max_prune:g}"

    def to_dict(self) -> dict[str, Any]:
        """The ``method`` object of a schedule document."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def _check(self) -> None:
        for field in dataclasses.fields(self):  # noise and score weights: NaN or a negative weight would mean nothing
            value = getattr(self, field.name)
            if isinstance(field.default, float) and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ScheduleError(f"method {self.name!r}: {field.name} must be a finite number >= 0, got {value!r}")
        for key, valid in self._choices().items():
            if getattr(self, key) not in valid:
                raise ScheduleError(f"method {self.name!r}: {key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")

    def _choices(self) -> dict[str, tuple[str, ...]]:
        """The string parameters and their valid values."""
        return {}


@dataclass(frozen=True)
class SimilarityMethod(TokenMethod):
    """Parameters shared by the similarity-recovery methods (SiTo, DaTo, random): base tokens and copies.

    Attributes:
        patch: side s of the s x s cells that each contribute one base token. A slot of N
            tokens has ceil(h/s) * ceil(w/s) base tokens, which are never pruned, so the prune
            ratio is capped at 1 - 1/s**2 (0.75 for s = 2).
        recover_from: where a pruned token copies its attention output from. ``"kept"`` (default)
            takes the most similar token among all tokens that went through attention, as the
            public SiTo/DaTo code does: it is a superset of the base tokens, so the copy is never
            less similar. ``"base"`` takes the most similar base token, as the papers' text says.
        align_cfg: give both halves of a classifier-free-guidance batch the same base tokens
            (DaTo Eq. 8). Only used when the pipeline runs batched CFG with two halves.
        align_source: which half's base tokens both halves use. ``"cond"`` (default) as the
            paper says (Fig. 3b: the unconditional half follows the guided one); the released
            code copies the unconditional half instead (``"uncond"``).
    """

    patch: int = 2
    recover_from: Recovery = "kept"
    align_cfg: bool = False
    align_source: AlignSource = "cond"

    @property
    def max_prune(self) -> float:
        """Base tokens cannot be pruned: ``1 - 1/patch**2``."""
        return 1.0 - 1.0 / (self.patch * self.patch)

    def describe_limit(self) -> str:
        return f"method {self.name!r} with patch {self.patch} accepts 0 to {self.max_prune:g}"

    def _check(self) -> None:
        if not isinstance(self.patch, int) or isinstance(self.patch, bool) or self.patch < 2:
            raise ScheduleError(f"method {self.name!r}: patch must be an integer >= 2, got {self.patch!r}")
        super()._check()

    def _choices(self) -> dict[str, tuple[str, ...]]:
        return {"recover_from": ("kept", "base"), "align_source": ("cond", "uncond")}


@dataclass(frozen=True)
class SitoConfig(SimilarityMethod):
    """SiTo: base tokens by similarity score (sum of a token's cosine similarities) plus noise.

    Attributes:
        noise: standard deviation of the Gaussian noise added to the similarity score (SiTo's
            sigma; the public code uses 0.1). The score is a sum over N cosines, so 0.1 mostly
            breaks near-ties inside a cell.
    """

    name: ClassVar[str] = "sito"
    noise: float = 0.1


@dataclass(frozen=True)
class DatoConfig(SimilarityMethod):
    """DaTo: base tokens by DiffScore, the temporal change of a feature between the two previous steps.

    Attributes:
        diff_source: ``"up_block"`` (default) measures the change of the shallowest up-block's
            output, as the paper's Eq. 6 says; it is recomputed on every cache step too, and its
            history only advances on steps that computed it, so a ``reuse`` step never zeroes the
            score. ``"model_output"`` measures the change of the UNet output, as the public code does.
        diff_weight: weight of the DiffScore in the base-token score (public code: 0.1).
        random_sign: flip the DiffScore's sign with probability 1/2 at every call, as the
            public code does (undocumented there). Off by default: the paper selects the
            token with the *largest* change.
        noise: standard deviation of the Gaussian noise added to the score (public code: 0.1).
        align_cfg: on by default, as in the paper (Table 3 shows its benefit).

    Before two computed steps exist there is no DiffScore; those steps fall back to SiTo's
    similarity score.
    """

    name: ClassVar[str] = "dato"
    align_cfg: bool = True
    diff_source: Literal["up_block", "model_output"] = "up_block"
    diff_weight: float = 1.0
    random_sign: bool = False
    noise: float = 0.1

    @classmethod
    def upstream(cls) -> DatoConfig:
        """The base-token scoring of the released DaTo code.

        Model-output DiffScore scaled to noise level with a random sign, CFG alignment copied from
        the unconditional half. It does not reproduce the release's accidents (zero DiffScore
        after a reuse step, pure noise before two computed steps).
        """
        return cls(diff_source="model_output", diff_weight=0.1, random_sign=True, noise=0.1, align_source="uncond")

    def _choices(self) -> dict[str, tuple[str, ...]]:
        return super()._choices() | {"diff_source": ("up_block", "model_output")}


@dataclass(frozen=True)
class RandomConfig(SimilarityMethod):
    """Uniformly random base and pruned tokens with the same similarity recovery: the ablation baseline."""

    name: ClassVar[str] = "random"
    align_cfg: bool = True


@dataclass(frozen=True)
class AtedmConfig(TokenMethod):
    """AT-EDM: tokens ranked by G-WPR on the attention map, pruned after the first layer of an attention
    block and carried through the following layers, recovered by similarity-based copy before the ResNet.

    Attributes:
        source: which attention map G-WPR reads: ``"self"`` (default; the paper's choice, Fig. 8)
            or ``"cross"`` (entropy-weighted, Eq. 1).
        iterations: G-WPR iterations. 0 (default) iterates until the scores change by less than
            ``epsilon`` (the paper's Algorithm 1); n > 0 runs exactly n, with no host synchronisation,
            which batches and suits GPUs (the criticism SiTo makes of AT-EDM).
        epsilon: the convergence threshold, on the L1 change of the unit-L1 scores.
        chunk: query rows per softmax chunk of the explicit attention map.

    Ratios up to 0.99 are accepted (at least one token of every slot is kept).
    """

    name: ClassVar[str] = "atedm"
    source: Literal["self", "cross"] = "self"
    iterations: int = 0
    epsilon: float = 1e-6
    chunk: int = 1024

    @property
    def max_prune(self) -> float:
        return 0.99

    def _check(self) -> None:
        for key, low in (("iterations", 0), ("chunk", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ScheduleError(f"method 'atedm': {key} must be an integer >= {low}, got {value!r}")
        super()._check()

    def _choices(self) -> dict[str, tuple[str, ...]]:
        return {"source": ("self", "cross")}


@dataclass(frozen=True)
class CatConfig(TokenMethod):
    """CAT pruning for DiTs (SD3, PixArt-Σ): each pruned step recomputes a fraction alpha = 1 - prune of the
    image tokens and every other token reuses its value from the previous step.

    The tokens a step recomputes are those whose predicted noise moved most since the reference
    step t0 (relative noise magnitude), taken inside the highest-scoring spatial clusters, plus
    the stalest tokens (lowest EWMA selection frequency). The steps before the first pruned one
    (``Schedule.cat``'s ``t0`` of them) run in full; the relative noise is measured against the
    output of the second-to-last of them (the paper's n_t0), and the last one gives the first
    selection and the clusters (K-means on relative noise + positional encoding, once per generation).

    Attributes:
        clusters: K-means clusters (the paper's 20).
        kmeans_iterations: Lloyd iterations, a fixed count so that nothing waits on the GPU.
        position_weight: weight of the positional encoding (Eq. 3) against the relative noise,
            which is first scaled to unit RMS so that the balance does not depend on the model's
            output scale.
        decay: the EWMA factor a of the selection frequency f_t = a * f_{t-1} + I_t (Eq. 2).
        noise_share: share of a step's tokens chosen by relative noise magnitude inside the top
            clusters; the rest are the stalest tokens (the released code's 25 %).
        top_clusters: clusters the noise share is spread over, weighted n, n-1, ..., 1 (the released code's 3).

    Ratios up to 0.99 are accepted (at least one token is recomputed).
    """

    name: ClassVar[str] = "cat"
    clusters: int = 20
    kmeans_iterations: int = 10
    position_weight: float = 1.0
    decay: float = 0.5
    noise_share: float = 0.25
    top_clusters: int = 3

    @property
    def max_prune(self) -> float:
        return 0.99

    def _check(self) -> None:
        for key, low in (("clusters", 1), ("kmeans_iterations", 0), ("top_clusters", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ScheduleError(f"method 'cat': {key} must be an integer >= {low}, got {value!r}")
        super()._check()
        for key in ("decay", "noise_share"):
            if getattr(self, key) > 1:
                raise ScheduleError(f"method 'cat': {key} must be between 0 and 1, got {getattr(self, key)!r}")


METHODS: dict[str, type[TokenMethod]] = {cls.name: cls for cls in (SitoConfig, DatoConfig, RandomConfig, AtedmConfig, CatConfig)}


def method_from_dict(data: Any) -> TokenMethod:
    """Build a method configuration from a schedule's ``method`` value (a name or an object)."""
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict) or "name" not in data:
        raise ScheduleError(f"'method' must be a method name or an object with a 'name'; valid names: {sorted(METHODS)}")
    params = dict(data)
    name = params.pop("name")
    if name not in METHODS:
        raise ScheduleError(f"unknown method {name!r}; valid methods: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ScheduleError(f"method {name!r} has no parameter {unknown[0]!r}; valid parameters: {', '.join(sorted(fields))}")
    for key, value in params.items():
        _check_type(name, key, value, fields[key].default)
        if isinstance(fields[key].default, float):
            params[key] = float(value)  # 1 and 1.0 are the same parameter, and hash the same
    return cls(**params)


def _check_type(method: str, key: str, value: Any, default: Any) -> None:
    expected: type | tuple[type, ...] = type(default)
    if expected is float:
        expected = (int, float)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
        raise ScheduleError(f"method {method!r}: parameter {key!r} must be of type {type(default).__name__}, got {value!r}")
