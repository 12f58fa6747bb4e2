"""The ``[calibration]`` table: the threshold methods' schedules of a calibration, as baselines and as seeds.

``prunesched calibrate MODEL`` records how much the full model changes from step to step
(:mod:`prunesched.calibration`); the schedules FirstBlockCache, TeaCache and MagCache would run on it, at each
threshold here, are evaluated beside the candidates like every other baseline (named ``FBCache 0.1``,
``TeaCache 0.2``, ...), and start the first generation, each as the space's nearest genome
(:func:`~prunesched.search.spaces.nearest_genome`), ahead of the baselines and the uniform seeds.

```toml
[calibration]
file = "calibration.json"   # from `prunesched calibrate MODEL`, at the search's model and num_inference_steps; next to the config
thresholds = { first_block = [0.05, 0.1, 0.2], teacache = [0.1, 0.2, 0.4], magcache = [0.02, 0.06, 0.2] }  # the defaults
baselines = true            # evaluate them as baselines (generation -1)
seeds = true                # start the first generation from them
```

The stored search keeps the document itself under ``file`` (so ``search resume`` needs no file); a calibration of
other weights or of another loop length than the search's is refused in one line when the config is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from prunesched.calibration.document import Calibration
from prunesched.calibration.thresholds import RULES, threshold_schedule
from prunesched.checks import check_number
from prunesched.errors import ConfigError
from prunesched.evaluation.settings import PipelineSettings
from prunesched.runtime.schedule import Schedule
from prunesched.search.evaluators import EvaluatorSettings
from prunesched.search.spaces import MAX_VALUES, Genome, Space, nearest_genome

MAX_THRESHOLD = 100.0
"""The largest threshold accepted: an accumulated relative change far above any a loop reaches."""


def _default_thresholds() -> dict[str, tuple[float, ...]]:
    return {name: rule.thresholds for name, rule in RULES.items()}


@dataclass(frozen=True)
class CalibrationConfig:
    """The ``[calibration]`` table (see the module docstring); without ``file`` it adds nothing to a search."""

    file: str | Mapping[str, Any] | None = None
    thresholds: Mapping[str, tuple[float, ...]] = field(default_factory=_default_thresholds)
    baselines: bool = True
    seeds: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.file, str):
            object.__setattr__(self, "file", Calibration.load(self.file).to_dict())
        elif self.file is not None and not isinstance(self.file, Mapping):
            raise ConfigError(f"[calibration] file must be the path of a calibration file, got {self.file!r:.80}")
        if not isinstance(self.thresholds, Mapping) or set(self.thresholds) - set(RULES):
            raise ConfigError(f"[calibration] thresholds must be a table with some of {', '.join(RULES)}, got {self.thresholds!r:.80}")
        for name, values in self.thresholds.items():
            if not isinstance(values, (list, tuple)) or not 0 < len(values) <= MAX_VALUES:
                raise ConfigError(f"[calibration] thresholds {name} must be a list of 1 to {MAX_VALUES} numbers, got {values!r:.80}")
            for value in values:
                check_number(value, f"thresholds {name}", "[calibration]", high=MAX_THRESHOLD)
        object.__setattr__(self, "thresholds", {name: tuple(values) for name, values in self.thresholds.items()})
        for name in ("baselines", "seeds"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"[calibration] {name} must be true or false, got {getattr(self, name)!r}")

    @cached_property
    def calibration(self) -> Calibration | None:
        """The calibration document ``file`` holds, validated; None without one."""
        return None if self.file is None else Calibration.from_dict(self.file, "[calibration] file")

    def check(self, evaluator: EvaluatorSettings, space: Space) -> None:
        """Refuse a calibration recorded on other weights than the evaluator's model (a model-less evaluator, the
        synthetic one, has none to compare) or on another loop length than the space's schedules."""
        if self.calibration is None:
            return
        from prunesched.models.loading import model_fingerprint  # torch: only where there is a calibration to check

        fingerprint = model_fingerprint(evaluator.model) if isinstance(evaluator, PipelineSettings) else None
        self.calibration.check(fingerprint, space.steps, "[calibration] file")

    def schedules(self, space: Space) -> dict[str, Schedule]:
        """Every threshold schedule with the space's token method, by name (``FBCache 0.1``); each method's lowest
        threshold first, then each one's next (so that the first few seed the dearest of every method)."""
        calibration = self.calibration
        if calibration is None:
            return {}
        named = {}
        for rank in range(max((len(values) for values in self.thresholds.values()), default=0)):
            for rule, values in self.thresholds.items():
                if rank < len(values):
                    named[f"{RULES[rule].label} {values[rank]:g}"] = threshold_schedule(calibration, rule, values[rank], space.method)
        return named

    def baseline_schedules(self, space: Space) -> dict[str, Schedule]:
        """The threshold schedules a search evaluates as baselines: all of them, or none where ``baselines`` is false."""
        return self.schedules(space) if self.baselines else {}

    def seed_genomes(self, space: Space) -> list[Genome]:
        """The genomes the first generation starts from: each threshold schedule's nearest in ``space``, or none where
        ``seeds`` is false."""
        return [nearest_genome(space, schedule) for schedule in self.schedules(space).values()] if self.seeds else []
