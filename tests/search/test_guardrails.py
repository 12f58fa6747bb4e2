"""Guardrails: a candidate outside them is stored with its reason, told to the proposer as a constraint
violation, and never stands on a front or goes into an export (real searches on the local Ray instance)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from prunesched.errors import ConfigError
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.search.guardrails import Guardrail, check, guardrails_from_config
from prunesched.storage import Store

LIMIT = 4.0
"""The synthetic problem's error bound in these searches: about half of its random schedules exceed it."""


def guarded_config(backend: str, sampler: str = "nsga2") -> SearchConfig:
    return SearchConfig.from_dict(
        {
            "name": "guarded",
            "seed": 2,
            "guardrails": [{"metric": "error", "max": LIMIT}],
            "space": {"kind": "dato", "steps": 8, "ratios": [0.0, 0.3, 0.5]},
            "evaluator": {"kind": "synthetic"},
            "proposer": {"backend": backend, "sampler": sampler, "population": 8, "generations": 3},
            "dispatch": {"workers": 2, "timeout_s": 120},
        }
    )


def test_a_bound_by_the_full_model_is_the_end_of_its_interval_and_the_reason_names_it():
    full = {"caption_accuracy": {"value": 0.9, "n": 16, "ci": [0.75, 1.0]}}
    rail = Guardrail("caption_accuracy", min="full")
    assert check([rail], {"caption_accuracy": {"value": 0.8, "n": 16, "ci": None}}, full) == (0.0, None)
    violation, reason = check([rail], {"caption_accuracy": {"value": 0.5, "n": 16, "ci": None}}, full)
    assert violation == pytest.approx(0.25)
    assert reason == "caption_accuracy 0.5 < 0.75 (the full model's 95% lower bound, n=16)"
    violation, reason = check([Guardrail("mse", max=0.01)], {"mse": {"value": 0.03, "n": 4, "ci": None}}, {})
    assert violation == pytest.approx(0.02) and reason == "mse 0.03 > 0.01 (the max set)"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"metric": "error"}, "needs min or max"),
        ({"metric": "error", "max": "lots"}, "max must be a finite number or 'full'"),
        ({"metric": "error", "max": 1, "below": 2}, "unknown key"),
        ("error", "each guardrail must be a table"),
    ],
)
def test_malformed_guardrails_are_refused_in_one_line(table, message):
    with pytest.raises(ConfigError, match=message):
        guardrails_from_config([table])


def test_the_shapes_model_is_guarded_by_caption_accuracy_unless_the_config_says_otherwise():
    default = SearchConfig.default()
    assert default.guardrails == (Guardrail("caption_accuracy", min="full"),)
    table = {**default.to_dict(), "guardrails": []}
    assert SearchConfig.from_dict(table).guardrails == ()
    assert SearchConfig.from_dict(default.to_dict()) == default


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(("backend", "sampler"), [("pymoo", "nsga2"), ("optuna", "nsga2"), ("optuna", "tpe")])
def test_a_candidate_outside_the_guardrails_never_reaches_a_front_or_an_export(tmp_path, backend, sampler):
    db = tmp_path / "search.db"
    config = guarded_config(backend, sampler)
    search_id = launch(config, db)
    store = Store(db)
    rows = store.evaluations(search_id, status="done")
    outside = [(c, e) for c, e in rows if e.metrics["error"]["value"] > LIMIT]
    inside = [(c, e) for c, e in rows if e.metrics["error"]["value"] <= LIMIT]
    assert outside and inside  # the bound splits the candidates
    for _, evaluation in outside:
        assert evaluation.violation == pytest.approx(evaluation.metrics["error"]["value"] - LIMIT)
        assert evaluation.violation_reason.startswith("error ") and evaluation.violation_reason.endswith(f"> {LIMIT:g} (the max set)")
    assert all(e.violation == 0 and e.violation_reason is None for _, e in inside)

    refused = {c.id for c, _ in outside}
    for generation in store.generations(search_id):
        assert generation.front and not refused & set(generation.front)
    best_inside = min(e.objective_0 for _, e in inside)
    assert store.candidates_by_id(store.generation(search_id).front)[0][1].objective_0 == best_inside  # not a better refused one

    # the proposer was told: pymoo's population and Optuna's trials carry the violations as constraint values
    state = json.loads(store.latest_snapshot(search_id))["state"]
    by_genome = {tuple(c.genome): e.violation for c, e in rows}
    if backend == "pymoo":
        told = [(tuple(m["genome"]), m["violation"]) for m in state["population"]]
    else:
        told = [(tuple(t["genome"]), t["system_attrs"]["constraints"][0]) for t in state["trials"] if t["state"] == "COMPLETE"]
    assert told and all(value == pytest.approx(by_genome[config.space.canonical(genome)]) for genome, value in told)

    runner = CliRunner()
    for pick in ("best", "fastest", "weighted"):
        out = tmp_path / f"{pick}.json"
        result = runner.invoke(main, ["export", str(search_id), "--pick", pick, "-o", str(out), "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text())["provenance"]["candidate"] not in refused
    victim = outside[0][0].id
    out = tmp_path / "refused.json"
    result = runner.invoke(main, ["export", str(search_id), "--candidate", str(victim), "-o", str(out), "--db", str(db)])
    assert result.exit_code == 2 and not out.exists()
    assert f"candidate {victim} is outside the guardrails: error " in result.output
    history = runner.invoke(main, ["history", "--search", str(search_id), "--status", "done", "--db", str(db)])
    assert history.exit_code == 0 and "refused" in history.output and f"> {LIMIT:g} (the max set)" in history.output
