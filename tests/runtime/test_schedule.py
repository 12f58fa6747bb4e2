import json
from pathlib import Path

import jsonschema
import pytest

from prunesched import BlockCache, Schedule, ScheduleError, StepPlan
from prunesched.runtime.methods import CatConfig, DatoConfig, SitoConfig
from prunesched.runtime.paper_tables import DATO_OURS_B1_CACHE_IDS, DATO_OURS_B1_RATIOS, dato_ours_b1

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "schedule.schema.json").read_text())


def test_save_load_round_trip(tmp_path):
    schedule = Schedule(
        steps=(StepPlan("full", 0.0), StepPlan(0, 0.5), StepPlan("reuse", 0.0)),
        method=DatoConfig(noise=0.2, diff_source="model_output"),
        slots=("down_blocks.0.attentions.0.transformer_blocks.0",),
        provenance={"fid": 25.4},
    )
    schedule.save(tmp_path / "s.json")
    loaded = Schedule.load(tmp_path / "s.json")
    assert loaded == schedule
    assert loaded.method.diff_source == "model_output"
    jsonschema.validate(json.loads((tmp_path / "s.json").read_text()), SCHEMA)


def test_hash_ignores_provenance_but_not_plans():
    a = Schedule.uniform(4, prune=0.5)
    assert a.hash == a.with_provenance(fid=1.0).hash
    assert a.hash != Schedule.uniform(4, prune=0.4).hash
    assert a.hash != Schedule.uniform(4, prune=0.5, method="dato").hash


def test_dato_table6_imports_losslessly():
    schedule = dato_ours_b1()
    assert len(schedule) == 51  # PNDM at 50 steps has 51 loop iterations
    assert schedule.steps[0] == StepPlan("full", 0.0)
    assert [s.cache for s in schedule.steps[1:4]] == [0, 0, 0]
    assert schedule.steps[9] == StepPlan("full", 0.6)  # table entry 8: cache id 12, ratio 0.6
    assert schedule.steps[18] == StepPlan("reuse", 0.3)  # table entry 17: cache id 0
    assert schedule.to_dato() == (list(DATO_OURS_B1_CACHE_IDS), list(DATO_OURS_B1_RATIOS))
    assert len(dato_ours_b1(leading_full=False)) == 50


def test_equal_schedules_hash_equal_whatever_the_number_spelling():
    a = Schedule.from_json(
        '{"format": "prunesched.schedule", "version": 1, "method": {"name": "sito", "noise": 1}, "steps": [{"prune": 0}]}'
    )
    b = Schedule.from_json(
        '{"format": "prunesched.schedule", "version": 1, "method": {"name": "sito", "noise": 1.0}, "steps": [{"prune": 0.0}]}'
    )
    assert a == b and a.hash == b.hash and hash(a) == hash(b)
    assert len({a, b, Schedule.uniform(1, prune=0.5)}) == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DatoConfig(diff_source="x"), "diff_source must be"),
        (lambda: SitoConfig(patch=0), "patch must be an integer >= 2"),
        (lambda: SitoConfig(recover_from="foo"), "recover_from must be one of kept, base"),
        (lambda: DatoConfig(align_source="both"), "align_source must be one of cond, uncond"),
    ],
)
def test_method_configs_are_validated_when_built_directly(build, message):
    with pytest.raises(ScheduleError, match=message):
        build()


def test_to_dato_refuses_a_schedule_without_the_leading_full_step():
    with pytest.raises(ScheduleError, match="leading_full expects step 0 to be a full unpruned step"):
        Schedule.uniform(3, cache=0, prune=0.3).to_dato()
    assert Schedule.uniform(3, cache=0, prune=0.3).to_dato(leading_full=False) == ([1, 1, 1], [0.3, 0.3, 0.3])


def test_uniform_and_deepcache_constructors():
    assert Schedule.uniform(3, cache=0, prune=0.3).steps == (StepPlan(0, 0.3),) * 3
    assert [s.cache for s in Schedule.deepcache(7, interval=3, branch=1).steps] == ["full", 1, 1, "full", 1, 1, "full"]


def test_resample_keeps_ends_and_maps_nearest():
    steps = tuple(StepPlan("full" if i % 2 else 0, round(0.1 * (i % 7), 1)) for i in range(10))
    schedule = Schedule(steps=steps)
    longer = schedule.resample(19)
    assert len(longer) == 19
    assert longer.steps[0] == steps[0] and longer.steps[-1] == steps[-1]
    assert longer.steps[2] == steps[1]
    assert longer.provenance["resampled_from"] == 10
    assert schedule.resample(10).steps == steps


BAD_DOCUMENTS = [
    ("{not json", "not valid JSON"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"format": "other", "version": 1, "steps": []}', "'format' must be"),
    ('{"format": "prunesched.schedule", "version": 9, "steps": []}', "version 9 is not supported"),
    ('{"format": "prunesched.schedule", "version": 1}', "has no 'steps'"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": []}', "has no steps"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"cache": "half"}]}', "unknown cache value 'half'"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"cache": -1}]}', "unknown cache value -1"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"cache": true}]}', "unknown cache value True"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"cache": {"first": 1}}]}', "a block cache is an object"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"cache": {"first": 1, "last": -1}}]}', "'last' must be an integer >= 0"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"prune": -0.1}]}', "out of range"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"prune": "0.5"}]}', "out of range"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{"ratio": 0.5}]}', "unknown field 'ratio'"),
    ('{"format": "prunesched.schedule", "version": 1, "method": "tome", "steps": [{}]}', "unknown method 'tome'"),
    ('{"format": "prunesched.schedule", "version": 1, "method": {"name": "sito", "sigma": 1}, "steps": [{}]}', "no parameter 'sigma'"),
    ('{"format": "prunesched.schedule", "version": 1, "method": {"name": "sito", "patch": "2"}, "steps": [{}]}', "patch"),
    ('{"format": "prunesched.schedule", "version": 1, "method": {"name": "dato", "diff_source": "x"}, "steps": [{}]}', "diff_source"),
    ('{"format": "prunesched.schedule", "version": 1, "slots": "lowest", "steps": [{}]}', "unknown slots 'lowest'"),
    ('{"format": "prunesched.schedule", "version": 1, "slots": [], "steps": [{}]}', "'slots' must be"),
    ('{"format": "prunesched.schedule", "version": 1, "steps": [{}], "extra": 1}', "unknown schedule field 'extra'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DOCUMENTS)
def test_bad_documents_name_the_problem(text, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")) as info:
        Schedule.from_json(text)
    assert "\n" not in str(info.value)
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_prune_limit_follows_patch_size():
    with pytest.raises(ScheduleError, match=r"method 'sito' with patch 2 accepts 0 to 0.75"):
        Schedule.from_json('{"format": "prunesched.schedule", "version": 1, "steps": [{"prune": 0.8}]}')
    Schedule.uniform(2, prune=0.85, method=SitoConfig(patch=3))
    with pytest.raises(ScheduleError, match=r"accepts 0 to 0.888889"):
        Schedule.uniform(2, prune=0.9, method=SitoConfig(patch=3))


@pytest.mark.parametrize(
    ("ids", "ratios", "message"),
    [([1, 1], [0.3], "2 cache ids but 1 prune ratios"), ([1, -2], [0.3, 0.3], "entry 1 is -2"), ([1], [0.9], "out of range")],
)
def test_bad_dato_tables(ids, ratios, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule.from_dato(ids, ratios)


def test_missing_file_is_a_schedule_error(tmp_path):
    with pytest.raises(ScheduleError, match="cannot read schedule file"):
        Schedule.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("1 0 12 1\n0.5 0.0 0.5 0.5\n", DatoConfig()),  # the paper's two rows
        ("[1, 0, 12, 1]\n[0.5, 0.0, 0.5, 0.5]\n", DatoConfig()),
        (json.dumps({"cache_ids": [1, 0, 12, 1], "ratios": [0.5, 0.0, 0.5, 0.5]}), DatoConfig()),
        (json.dumps({"cache_ids": [1, 0, 12, 1], "ratios": [0.5, 0.0, 0.5, 0.5], "method": "sito"}), SitoConfig()),
    ],
    ids=["two lines", "two bracketed lines", "json", "json with method"],
)
def test_load_dato_reads_both_table_forms(tmp_path, text, method):
    (tmp_path / "table").write_text(text)
    expected = Schedule.from_dato([1, 0, 12, 1], [0.5, 0.0, 0.5, 0.5], method=method)
    assert Schedule.load_dato(tmp_path / "table") == expected


def test_load_reads_only_schedule_documents_and_names_load_dato_for_a_table(tmp_path):
    (tmp_path / "rows.txt").write_text("1 0 12\n0.5 0.0 0.5\n")
    (tmp_path / "table.json").write_text(json.dumps({"cache_ids": [1, 0], "ratios": [0.5, 0.0]}))
    for name in ("rows.txt", "table.json"):
        with pytest.raises(ScheduleError, match=r"DaTo table.*read it with Schedule.load_dato") as info:
            Schedule.load(tmp_path / name)
        assert "\n" not in str(info.value)
    (tmp_path / "truncated.json").write_text('{"format": "prunesched.sch')
    with pytest.raises(ScheduleError, match=r"is not JSON \(Unterminated string") as info:
        Schedule.load(tmp_path / "truncated.json")
    assert "DaTo" not in str(info.value)
    Schedule.uniform(3).save(tmp_path / "s.json")
    with pytest.raises(ScheduleError, match=r"is not a DaTo table.*a schedule document is read with Schedule.load"):
        Schedule.load_dato(tmp_path / "s.json")


def test_block_cache_steps_round_trip_and_validate(tmp_path):
    steps = (StepPlan("full"), StepPlan(BlockCache(2, 1)), StepPlan(1), StepPlan("reuse"))
    schedule = Schedule(steps=steps, method=CatConfig())
    schedule.save(tmp_path / "s.json")
    document = json.loads((tmp_path / "s.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["steps"][1]["cache"] == {"first": 2, "last": 1}
    loaded = Schedule.load(tmp_path / "s.json")
    assert loaded == schedule and loaded.hash == schedule.hash and str(loaded.steps[1].cache) == "F2B1"
    assert BlockCache.of(1) == BlockCache(2, 2) and BlockCache.of(BlockCache(0, 3)) == BlockCache(0, 3)


def test_forecast_steps_round_trip_and_schedules_without_them_keep_their_hashes(tmp_path):
    """``forecast`` is written only where it is not 0, so every schedule made before it existed keeps its document and
    hash (these were computed before the field was added)."""
    assert Schedule.deepcache(51, 3).hash == "8824115a065f7ff2116ba98ec7ac76f37e662bb6e361efb8bd62c72f7b336616"
    assert dato_ours_b1().hash == "ad67d0c3860fce175853bceb02c0eef49e839a673f9ea24f45e45db3d67f73f6"
    steps = (StepPlan("full"), StepPlan(0, 0.5, forecast=1), StepPlan("reuse", forecast=2), StepPlan(BlockCache(2, 1), forecast=1))
    schedule = Schedule(steps=steps)
    schedule.save(tmp_path / "s.json")
    document = json.loads((tmp_path / "s.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert [step.get("forecast") for step in document["steps"]] == [None, 1, 2, 1]
    loaded = Schedule.load(tmp_path / "s.json")
    assert loaded == schedule and loaded.hash == schedule.hash and loaded.forecast == 2
    assert schedule.hash != Schedule(steps=(*steps[:3], StepPlan(BlockCache(2, 1)))).hash
    assert schedule.resample(8).forecast == 2 and Schedule.deepcache(5, 2).forecast == 0
    assert [s.forecast for s in Schedule.deepcache(5, 2, "reuse", forecast=1).steps] == [0, 1, 0, 1, 0]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ('{"cache": "full", "forecast": 1}', "step 0: a full step computes everything and forecasts nothing; valid: forecast 0"),
        ('{"forecast": 2}', "step 0: a full step computes everything"),
        ('{"cache": 0, "forecast": 3}', r"step 0: forecast 3 is not an order; valid: 0, 1, 2 \(0 copies the cache\)"),
        ('{"cache": "reuse", "forecast": true}', "step 0: forecast True is not an order"),
    ],
)
def test_bad_forecasts_are_refused_in_one_line_by_the_format_and_its_schema(step, message):
    text = f'{{"format": "prunesched.schedule", "version": 1, "steps": [{step}]}}'
    with pytest.raises(ScheduleError, match=message) as info:
        Schedule.from_json(text)
    assert "\n" not in str(info.value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(text), SCHEMA)


def test_a_dato_table_cannot_hold_a_forecast_step():
    with pytest.raises(ScheduleError, match="step 1 forecasts at order 1, which a DaTo table cannot express; valid: forecast 0"):
        Schedule(steps=(StepPlan("full"), StepPlan(0), StepPlan("reuse", forecast=1))).to_dato()
