"""A search mirrored into an Optuna study, so that optuna-dashboard can browse it.

Each evaluation becomes a trial: the per-step cache choice and prune ratio (and forecast order, in a search that
has forecast steps) as its parameters, the two objectives as its values (both minimised), failed evaluations as
failed trials, and the candidate id, generation and every metric as user attributes. The mirror is derived data: it is
rebuilt from the search database each time, which is only read.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from prunesched.runtime.schedule import Schedule
from prunesched.storage.store import Store

if TYPE_CHECKING:
    import optuna


def mirror_to_optuna(store: Store, search_id: int, storage: str, name: str | None = None) -> optuna.Study:
    """Write search ``search_id`` as the study ``name`` (default ``prunesched-ID-NAME``) in ``storage``, replacing one of that name."""
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    search = store.search(search_id)
    name = name or f"prunesched-{search.id}-{search.name}"
    if name in optuna.study.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "minimize"])
    with warnings.catch_warnings():  # experimental in name only since Optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([str(o) for o in search.objectives])
    study.set_user_attr("prunesched_search", search.id)
    rows = [(c, e) for c, e in store.evaluations(search_id) if e.status in ("done", "failed")]  # oldest first
    plans = {c.id: Schedule.from_dict(c.schedule).steps for c, _ in rows}
    cache = CategoricalDistribution(sorted({str(s.cache) for steps in plans.values() for s in steps}))
    prune = FloatDistribution(0.0, 1.0)
    orders = sorted({s.forecast for steps in plans.values() for s in steps})
    forecast = CategoricalDistribution(orders) if any(orders) else None  # a parameter only in searches with forecast steps
    trials = []
    for candidate, evaluation in rows:
        params: dict[str, Any] = {}
        distributions: dict[str, BaseDistribution] = {}
        for i, step in enumerate(plans[candidate.id]):
            params[f"step{i:03d}_cache"], distributions[f"step{i:03d}_cache"] = str(step.cache), cache
            params[f"step{i:03d}_prune"], distributions[f"step{i:03d}_prune"] = step.prune, prune
            if forecast is not None:
                params[f"step{i:03d}_forecast"], distributions[f"step{i:03d}_forecast"] = step.forecast, forecast
        metrics = {k: v["value"] for k, v in (evaluation.metrics or {}).items() if isinstance(v, dict) and "value" in v}
        attrs = {
            "candidate": candidate.id,
            "generation_born": candidate.generation_born,
            "schedule_hash": candidate.schedule_hash,
            **metrics,
        }
        done = evaluation.status == "done"
        trials.append(
            create_trial(
                state=TrialState.COMPLETE if done else TrialState.FAIL,
                params=params,
                distributions=distributions,
                values=list(evaluation.objectives) if done else None,
                user_attrs=attrs if done else {**attrs, "error": evaluation.error or ""},
            )
        )
    study.add_trials(trials)
    return study
