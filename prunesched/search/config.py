"""The search configuration: one TOML file, validated in full before anything runs.

```toml
name = "dato-sd15"
seed = 0
objectives = ["mse", "relative_latency"]   # quality first, cost second; both minimised
reference_point = [0.1, 1.1]               # optional; else fixed from the first generation

guardrails = [{ metric = "caption_accuracy", min = "full" }]  # optional; else the evaluator's default

[space]        # prunesched.search.spaces
[proposer]     # prunesched.search.proposers.ProposerConfig
[evaluator]    # prunesched.search.evaluators.SETTINGS
[baselines]    # prunesched.search.baselines.BaselinesConfig
[calibration]  # prunesched.search.calibration.CalibrationConfig
[screening]    # prunesched.search.screening.ScreeningConfig
[confirmation] # prunesched.search.confirmation.ConfirmationConfig
[validation]   # prunesched.search.validation.ValidationConfig
[dispatch]     # DispatchConfig below
```
The whole configuration is stored with the search, so ``search resume ID`` needs no file: :meth:`SearchConfig.to_dict`
writes each table as plain data (the ``[evaluator]`` table with its ``kind`` and every setting) and
:meth:`SearchConfig.from_dict` reads it back, validating it again.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from prunesched.checks import MAX_SEED, check_keys, check_number
from prunesched.errors import ConfigError
from prunesched.files import read_text
from prunesched.runtime.schedule import Schedule
from prunesched.search.baselines import BaselinesConfig, distinct, seed_genomes
from prunesched.search.calibration import CalibrationConfig
from prunesched.search.confirmation import ConfirmationConfig
from prunesched.search.evaluators import EvaluatorSettings, evaluator_settings, evaluator_table
from prunesched.search.guardrails import Guardrail, guardrails_from_config, guardrails_to_config
from prunesched.search.proposers import ProposerConfig
from prunesched.search.screening import ScreeningConfig
from prunesched.search.spaces import Genome, Space, space_from_config, space_to_config
from prunesched.search.validation import ValidationConfig

T = TypeVar("T")

PRESETS = Path(__file__).with_name("presets")
"""Shipped search configs, one TOML file per name: ``prunesched search launch --preset NAME``."""
DEFAULT_PRESET = "shapes"
"""The preset ``prunesched search launch`` runs without a config: the embedded default search."""

RAY_CLIENT_REFUSED = (
    "[dispatch] address: Ray Client (ray://) is not supported; run the search on a node of the cluster "
    "with address 'auto', or give the head's GCS address host:port (e.g. 10.0.0.5:6379)"
)
"""Why: a Ray Client driver loses its actors when its connection drops for 30 s, and a search runs for hours; the
coordinator is the one writer of the database and belongs on the cluster, where it joins the GCS directly."""

MAX_WORKERS = 1_024
"""Evaluator actors at most: one per GPU of a 128-node, 8-GPU cluster. A local Ray instance has a lower
limit, this machine's CPU count: each worker is a process here, and more of them than CPUs only time-share
(and skew every measured latency)."""
MAX_RETRIES = 100
"""Further attempts of one candidate at most."""
MAX_TIMEOUT_S = 7 * 24 * 3600.0
"""The longest an evaluation may run: a week."""
MAX_GPUS_PER_WORKER = 64.0
"""An actor runs on one node, and no node has more GPUs than this."""
MAX_CPUS_PER_WORKER = 1_024.0
"""An actor runs on one node, and no node has more CPUs than this."""


@dataclass(frozen=True)
class DispatchConfig:
    """The ``[dispatch]`` table: how evaluations are farmed out to Ray actors.

    Every number is bounded (the ``MAX_`` constants of this module), so a typo is refused at load, before Ray starts.

    Attributes:
        workers: evaluator actors, each loading its pipeline once; without ``address``, at most this machine's CPUs.
        address: ``None`` (or ``"local"``) starts a private local Ray instance, even when a cluster runs on this
            machine; ``"auto"`` joins the cluster ``ray start`` started here (or ``RAY_ADDRESS``), ``"host:port"``
            the cluster whose head's GCS listens there. Ray Client (``"ray://..."``) is refused: see :data:`RAY_CLIENT_REFUSED`.
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
        check_number(self.workers, "workers", "[dispatch]", integer=True, low=1, high=MAX_WORKERS)
        check_number(self.retries, "retries", "[dispatch]", integer=True, high=MAX_RETRIES)
        check_number(self.gpus_per_worker, "gpus_per_worker", "[dispatch]", high=MAX_GPUS_PER_WORKER)
        check_number(self.cpus_per_worker, "cpus_per_worker", "[dispatch]", high=MAX_CPUS_PER_WORKER)
        check_number(self.timeout_s, "timeout_s", "[dispatch]", low_open=True, high=MAX_TIMEOUT_S)
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"[dispatch] address must be 'auto' or a Ray head's host:port like '10.0.0.5:6379', got {self.address!r}")
        if self.address is not None and "://" in self.address:
            raise ConfigError(RAY_CLIENT_REFUSED)

    def check_local_room(self) -> None:
        """Refuse more workers than this machine has CPUs when they would run on a private local Ray instance.

        Checked when the workers start (before Ray does), not when the config is loaded, because
        ``--address`` on the command line may still point a config's workers at a cluster.
        """
        cpus = os.cpu_count() or 1
        if self.address in (None, "local") and self.workers > cpus:
            raise ConfigError(
                f"[dispatch] workers = {self.workers} but a local Ray instance runs every worker on this machine, which has {cpus} CPUs; "
                "lower workers or name a Ray cluster ([dispatch] address or --address)"
            )


@dataclass(frozen=True)
class SearchConfig:
    """A validated search configuration (see the module docstring for the file layout).

    ``evaluator`` holds the settings of the ``[evaluator]`` table's kind, built and checked once, here.
    ``guardrails`` (:mod:`prunesched.search.guardrails`) default to the evaluator's own
    (``default_guardrails``), ``baselines`` (:mod:`prunesched.search.baselines`) to the hand-made
    schedules every search is compared with, ``calibration`` (:mod:`prunesched.search.calibration`) to none (a
    calibration's threshold schedules as more baselines and as seeds of the first generation), ``screening``
    (:mod:`prunesched.search.screening`) to new candidates scored on 4 images before the promising ones get all, ``confirmation``
    (:mod:`prunesched.search.confirmation`) to none (front points evaluated again on more images during the search), ``validation``
    (:mod:`prunesched.search.validation`) to the final front and the baselines evaluated again on four times the images.
    """

    space: Space
    evaluator: EvaluatorSettings
    objectives: tuple[str, str]
    name: str = "search"
    seed: int = 0
    reference_point: tuple[float, float] | None = None
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    guardrails: tuple[Guardrail, ...] = ()
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    confirmation: ConfirmationConfig = field(default_factory=ConfirmationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        keys = ["name", "seed", "objectives", "reference_point", "guardrails", "space", "proposer", "evaluator", "baselines"]
        keys += ["calibration", "screening", "confirmation", "validation", "dispatch"]
        check_keys(data, keys, "the search config")
        for table in ("space", "evaluator"):
            if not isinstance(data.get(table), Mapping):
                raise ConfigError(f"the search config needs a [{table}] table")
        evaluator = evaluator_settings(data["evaluator"])  # refuses unknown kinds and keys now, not on a worker
        metrics = evaluator.objective_metrics()
        objectives = data.get("objectives", [metrics[0], metrics[-1]])
        if (
            not isinstance(objectives, list)
            or len(objectives) != 2
            or not set(objectives) <= set(metrics)
            or objectives[0] == objectives[1]
        ):
            raise ConfigError(f"objectives must be two metrics of the {evaluator.kind} evaluator: {', '.join(metrics)}; got {objectives!r}")
        reference = data.get("reference_point")
        if reference is not None and (
            not isinstance(reference, list)
            or len(reference) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in reference)
        ):
            raise ConfigError(f"reference_point must be two finite numbers, one per objective, got {reference!r}")
        seed = data.get("seed", 0)
        check_number(seed, "seed", "the search config's", integer=True, high=MAX_SEED)
        space = space_from_config(data["space"])
        baselines = _build(BaselinesConfig, data, "baselines")
        baselines.schedules(space)  # a baseline the space's method cannot run is refused now
        calibration = _build(CalibrationConfig, data, "calibration")
        calibration.check(evaluator, space)
        confirmation = _build(ConfirmationConfig, data, "confirmation")
        confirmation.check(evaluator)
        return cls(
            space=space,
            evaluator=evaluator,
            objectives=(objectives[0], objectives[1]),
            name=str(data.get("name", "search")),
            seed=seed,
            reference_point=None if reference is None else (float(reference[0]), float(reference[1])),
            proposer=_build(ProposerConfig, data, "proposer"),
            dispatch=_build(DispatchConfig, data, "dispatch"),
            guardrails=guardrails_from_config(data.get("guardrails", evaluator.default_guardrails())),
            baselines=baselines,
            calibration=calibration,
            screening=_build(ScreeningConfig, data, "screening"),
            confirmation=confirmation,
            validation=_build(ValidationConfig, data, "validation"),
        )

    @classmethod
    def default(cls) -> SearchConfig:
        """The embedded default search (``presets/shapes.toml`` next to this module)."""
        return cls.preset(DEFAULT_PRESET)

    @classmethod
    def preset(cls, name: str) -> SearchConfig:
        """The shipped search config ``name`` (:func:`preset_names`)."""
        if name not in preset_names():
            raise ConfigError(f"unknown search preset {name!r}; valid presets: {', '.join(preset_names())}")
        return cls.load(PRESETS / f"{name}.toml")

    @classmethod
    def load(cls, path: str | Path) -> SearchConfig:
        """The search config in the TOML file ``path``; a relative ``[calibration] file`` is found next to it."""
        text = read_text(path, "search config", ConfigError)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"search config {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(files_beside(data, Path(path).parent))

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into this config (stored with the search)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "objectives": list(self.objectives),
            "reference_point": None if self.reference_point is None else list(self.reference_point),
            "space": space_to_config(self.space),
            "proposer": _table(self.proposer),
            "evaluator": evaluator_table(self.evaluator),
            "dispatch": _table(self.dispatch),
            "guardrails": guardrails_to_config(self.guardrails),
            "baselines": _table(self.baselines),
            "calibration": _table(self.calibration),
            "screening": _table(self.screening),
            "confirmation": _table(self.confirmation),
            "validation": _table(self.validation),
        }

    def baseline_schedules(self) -> dict[str, Schedule]:
        """Every baseline of the search by name: the ``[baselines]`` table's, then the calibration's threshold schedules;
        a schedule named twice keeps its first name."""
        return distinct({**self.baselines.schedules(self.space), **self.calibration.baseline_schedules(self.space)})

    def seed_genomes(self) -> list[Genome]:
        """The genomes the first generation starts with, in order: the calibration's seeds (projected into the space),
        then the baselines the space holds."""
        return self.calibration.seed_genomes(self.space) + seed_genomes(self.space, list(self.baseline_schedules().values()))


def _table(config: Any) -> dict[str, Any]:
    """A config dataclass as the TOML table it was built from (tuples as lists)."""
    return {f.name: list(value) if isinstance(value := getattr(config, f.name), tuple) else value for f in fields(config)}


def _build(cls: type[T], data: Mapping[str, Any], name: str) -> T:
    """The dataclass ``cls`` from the optional table ``[name]``, refusing keys it does not have."""
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{name}] must be a table, got {type(table).__name__}")
    check_keys(table, [f.name for f in fields(cls)], f"[{name}]")  # type: ignore[arg-type]
    try:
        return cls(**table)
    except TypeError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


def files_beside(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A search config's tables with a relative ``[calibration] file`` taken from ``folder``, the config file's."""
    calibration = data.get("calibration")
    if isinstance(calibration, dict) and isinstance(calibration.get("file"), str):
        return data | {"calibration": calibration | {"file": str(folder / Path(calibration["file"]).expanduser())}}
    return data


def preset_names() -> list[str]:
    """The shipped search presets' names."""
    return sorted(path.stem for path in PRESETS.glob("*.toml"))
