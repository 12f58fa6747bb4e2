"""The search configuration: one TOML file, validated in full before anything runs.

```toml
name = "dato-sd15"
seed = 0
objectives = ["mse", "relative_latency"]   # quality first, cost second; both minimised
reference_point = [0.1, 1.1]               # optional; else fixed from the first generation

[space]        # prunesched.search.spaces
[proposer]     # prunesched.search.proposers.ProposerConfig
[evaluator]    # prunesched.search.evaluators.EVALUATORS
[dispatch]     # DispatchConfig below
```
The whole configuration is stored with the search, so ``search resume ID`` needs no file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from prunesched.errors import ConfigError
from prunesched.search.evaluators import evaluator_factory, evaluator_metrics
from prunesched.search.proposers import ProposerConfig
from prunesched.search.spaces import Space, space_from_config, space_to_config

T = TypeVar("T")

DEFAULT = Path(__file__).with_name("default.toml")


@dataclass(frozen=True)
class DispatchConfig:
    """The ``[dispatch]`` table: how evaluations are farmed out to Ray actors.

    Attributes:
        workers: evaluator actors, each loading its pipeline once.
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"ray://host:port"`` joins a cluster.
        gpus_per_worker: 1 on a GPU cluster (an exclusive GPU keeps latency honest), 0 locally.
        cpus_per_worker: CPUs Ray reserves per actor (0 lets actors share a small machine).
        timeout_s: an evaluation running longer is abandoned and its actor restarted.
        retries: further attempts after a failed or timed-out one before the candidate is recorded as failed.
    """

    workers: int = 2
    address: str | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 0.0
    timeout_s: float = 1800.0
    retries: int = 2

    def __post_init__(self) -> None:
        limits = {"workers": (int, 1), "retries": (int, 0), "gpus_per_worker": (float, 0), "cpus_per_worker": (float, 0)}
        for name, (kind, low) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, kind)) or value < low:
                raise ConfigError(f"[dispatch] {name} must be {'an integer' if kind is int else 'a number'} >= {low}, got {value!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ConfigError(f"[dispatch] timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"[dispatch] address must be 'auto' or a Ray address like 'ray://head:10001', got {self.address!r}")


@dataclass(frozen=True)
class SearchConfig:
    """A validated search configuration (see the module docstring for the file layout)."""

    space: Space
    evaluator: Mapping[str, Any]
    objectives: tuple[str, str]
    name: str = "search"
    seed: int = 0
    reference_point: tuple[float, float] | None = None
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        valid = ("name", "seed", "objectives", "reference_point", "space", "proposer", "evaluator", "dispatch")
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in the search config; valid: {', '.join(valid)}")
        for table in ("space", "evaluator"):
            if not isinstance(data.get(table), Mapping):
                raise ConfigError(f"the search config needs a [{table}] table")
        evaluator = dict(data["evaluator"])
        evaluator_factory(evaluator)  # refuses unknown kinds and keys now, not on a worker
        metrics = evaluator_metrics(evaluator)
        objectives = data.get("objectives", [metrics[0], metrics[-1]])
        if not isinstance(objectives, list) or len(objectives) != 2 or not set(objectives) <= set(metrics) or objectives[0] == objectives[1]:
            raise ConfigError(f"objectives must be two metrics of the {evaluator.get('kind', 'pipeline')} evaluator: {', '.join(metrics)}; got {objectives!r}")
        reference = data.get("reference_point")
        if reference is not None and (
            not isinstance(reference, list) or len(reference) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in reference)
        ):
            raise ConfigError(f"reference_point must be two numbers, one per objective, got {reference!r}")
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        return cls(
            space=space_from_config(data["space"]),
            evaluator=evaluator,
            objectives=(objectives[0], objectives[1]),
            name=str(data.get("name", "search")),
            seed=seed,
            reference_point=None if reference is None else (float(reference[0]), float(reference[1])),
            proposer=_build(ProposerConfig, data, "proposer"),
            dispatch=_build(DispatchConfig, data, "dispatch"),
        )

    @classmethod
    def default(cls) -> SearchConfig:
        """The embedded default search (``default.toml`` next to this module)."""
        return cls.load(DEFAULT)

    @classmethod
    def load(cls, path: str | Path) -> SearchConfig:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read search config {str(path)!r}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"search config {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into this config (stored with the search)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "objectives": list(self.objectives),
            "reference_point": None if self.reference_point is None else list(self.reference_point),
            "space": space_to_config(self.space),
            "proposer": {f.name: getattr(self.proposer, f.name) for f in fields(self.proposer)},
            "evaluator": dict(self.evaluator),
            "dispatch": {f.name: getattr(self.dispatch, f.name) for f in fields(self.dispatch)},
        }


def _build(cls: type[T], data: Mapping[str, Any], name: str) -> T:
    """The dataclass ``cls`` from the optional table ``[name]``, refusing keys it does not have."""
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{name}] must be a table, got {type(table).__name__}")
    valid = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in [{name}]; valid: {', '.join(valid)}")
    try:
        return cls(**table)
    except TypeError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None
