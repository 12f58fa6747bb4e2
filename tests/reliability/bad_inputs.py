"""The bad-input corpus: every way a user can hand prunesched something wrong, and what it must say.

Each case runs one CLI command. ``{dir}`` in its arguments is a scratch folder holding the case's
``files`` (content, or a :class:`Special` file); ``{db}`` is a search database of the kind ``db`` names (``finished``: a real finished
search; ``newer``: the same with a newer schema version; ``foreign``: another program's SQLite;
``empty``: a 0-byte file; ``text``: a text file). ``symlinks`` and ``hardlinks`` name links made in
the scratch folder and their targets (``{db}`` and ``{dir}`` allowed). ``expect`` is a piece of the one-line error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from prunesched.files import MAX_DOCUMENT_BYTES

STEPS = 5
"""Loop iterations of the tiny SD pipeline at ``--steps 4`` (PNDM runs one more)."""

EVAL = ["eval", "{dir}/s.json", "--model", "tiny-sd", "--images", "1", "--steps", "4", "--repeats", "1", "--cache-dir", "{dir}/cache"]
LAUNCH = ["search", "launch", "{dir}/c.toml", "--db", "{db}"]
SHOW = ["schedule", "show", "{dir}/s.json"]


@dataclass(frozen=True)
class Special:
    """A scratch file made other than by writing content: a named pipe (``fifo``) or ``size`` zero bytes (``zeros``, sparse, so instant)."""

    kind: Literal["fifo", "zeros"]
    size: int = 0


FIFO = Special("fifo")
OVERSIZED = Special("zeros", MAX_DOCUMENT_BYTES + 1)


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expect: str
    files: dict[str, str | bytes | Special] = field(default_factory=dict)
    db: str = "finished"
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)


def schedule(steps: Any = None, **fields: Any) -> str:
    """A schedule document of ``STEPS`` full steps, with ``steps`` or other fields replaced."""
    document = {
        "format": "prunesched.schedule",
        "version": 1,
        "method": {"name": "dato"},
        "steps": [{"cache": "full", "prune": 0.0}] * STEPS if steps is None else steps,
    }
    return json.dumps({**document, **fields})


def step(**fields: Any) -> str:
    """A schedule whose step 1 has ``fields``."""
    steps: list[Any] = [{"cache": "full", "prune": 0.0}] * STEPS
    return schedule([steps[0], {"cache": "full", "prune": 0.0, **fields}, *steps[2:]])


def config(text: str | Special) -> dict[str, str | bytes | Special]:
    return {"c.toml": text}


VALID = '[space]\nkind = "dato"\nsteps = 4\n\n[evaluator]\nkind = "synthetic"\n'
"""A synthetic search config that launches; cases add to it or write their own."""

BIG = str(2**70)
"""An integer beyond the 64 bits a database column holds."""
IN_RANGE = "is not in the range 0<=x<=9223372036854775807"
ONTO_DB = "is the search database"
NOT_REGULAR = "an output path must be a regular file or a new name"


CASES = [
    # schedule files
    Case("truncated JSON", SHOW, "is not JSON", {"s.json": schedule()[:40]}),
    Case("empty schedule file", SHOW, "is not JSON", {"s.json": ""}),
    Case("binary schedule file (a pickle)", SHOW, "cannot read schedule file", {"s.json": b"\x80\x04\x95\x10\x00\x00\xff\xfe"}),
    Case("top-level array", SHOW, "must be a JSON object", {"s.json": "[1, 2]"}),
    Case("wrong format tag", SHOW, "'format' must be", {"s.json": schedule(format="tomesd")}),
    Case("newer format version", SHOW, "schedule version 2 is not supported", {"s.json": schedule(version=2)}),
    Case("unknown top-level field", SHOW, "unknown schedule field 'stepz'", {"s.json": schedule(stepz=[])}),
    Case("no steps field", SHOW, "schedule has no 'steps'", {"s.json": json.dumps({"format": "prunesched.schedule", "version": 1})}),
    Case("empty steps", SHOW, "schedule has no steps", {"s.json": schedule([])}),
    Case("step not an object", SHOW, "must be an object like", {"s.json": schedule([1, 2])}),
    Case("unknown step field", SHOW, "unknown field 'skip'", {"s.json": step(skip=True)}),
    Case("unknown cache value", SHOW, "unknown cache value 'half'", {"s.json": step(cache="half")}),
    Case("negative cache branch", SHOW, "unknown cache value -1", {"s.json": step(cache=-1)}),
    Case("prune ratio above the method's limit", SHOW, "prune ratio 0.9 is out of range", {"s.json": step(prune=0.9)}),
    Case("negative prune ratio", SHOW, "prune ratio -0.1 is out of range", {"s.json": step(prune=-0.1)}),
    Case("prune ratio as a string", SHOW, "prune ratio '0.5' is out of range", {"s.json": step(prune="0.5")}),
    Case("prune ratio NaN", SHOW, "prune ratio nan is out of range", {"s.json": step(prune=float("nan"))}),
    Case("unknown method", SHOW, "unknown method 'tome'", {"s.json": schedule(method={"name": "tome"})}),
    Case(
        "method parameter of the wrong type",
        SHOW,
        "parameter 'patch' must be of type int",
        {"s.json": schedule(method={"name": "dato", "patch": "2"})},
    ),
    Case("negative method noise", SHOW, "noise must be a finite number >= 0", {"s.json": schedule(method={"name": "sito", "noise": -1})}),
    Case("unknown slot keyword", SHOW, "unknown slots 'lowest'", {"s.json": schedule(slots="lowest")}),
    Case("integer too long to read", SHOW, "is JSON that cannot be read", {"s.json": '{"steps": [{"cache": ' + "9" * 5000 + "}]}"}),
    Case("nesting too deep", SHOW, "is JSON that cannot be read", {"s.json": "[" * 100_000 + "]" * 100_000}),
    Case("schedule a link to /dev/zero", SHOW, "is a character device; give a regular file", symlinks={"s.json": "/dev/zero"}),
    Case("schedule a named pipe", SHOW, "is a named pipe; give a regular file", {"s.json": FIFO}),
    Case("DaTo table a named pipe", [*SHOW, "--dato"], "is a named pipe; give a regular file", {"s.json": FIFO}),
    Case("schedule file over 16 MiB", SHOW, "is larger than 16 MiB", {"s.json": OVERSIZED}),
    Case("DaTo table given as a schedule", SHOW, "read it with Schedule.load_dato", {"s.json": "1 0 12\n0.5 0.5 0.5\n"}),
    Case("DaTo table rows of different lengths", [*SHOW, "--dato"], "3 cache ids but 2 prune ratios", {"s.json": "1 0 12\n0.5 0.5\n"}),
    Case(
        "DaTo table with cache ids not a list",
        [*SHOW, "--dato"],
        "must be lists of numbers",
        {"s.json": json.dumps({"cache_ids": 5, "ratios": [0.5]})},
    ),
    Case(
        "DaTo table without ratios",
        [*SHOW, "--dato"],
        "a DaTo table holds 'cache_ids', 'ratios'",
        {"s.json": json.dumps({"cache_ids": [1, 0]})},
    ),
    Case(
        "DaTo cache id not valid",
        [*SHOW, "--dato"],
        "valid ids are 0 (reuse), 1 (branch 0), 12 (full)",
        {"s.json": json.dumps({"cache_ids": [1, -3], "ratios": [0.5, 0.5]})},
    ),
    # schedules that do not fit the model, and prompts
    Case(
        "schedule of the wrong length",
        EVAL,
        f"schedule has 7 steps but the pipeline's loop has {STEPS}",
        {"s.json": schedule([{"cache": "full", "prune": 0.0}] * 7)},
    ),
    Case("cache branch the UNet lacks", EVAL, "cache branch 40 is not valid for this UNet", {"s.json": step(cache=40)}),
    Case("missing prompt file", [*EVAL, "--prompts", "{dir}/none.txt"], "none.txt", {"s.json": schedule()}),
    Case(
        "prompt file not UTF-8", [*EVAL, "--prompts", "{dir}/p.txt"], "is not UTF-8 text", {"s.json": schedule(), "p.txt": b"\xff\xfe\x00a"}
    ),
    Case("empty prompt file", [*EVAL, "--prompts", "{dir}/p.txt"], "holds no prompts", {"s.json": schedule(), "p.txt": "\n\n"}),
    Case(
        "prompt file a link to /dev/zero",
        [*EVAL, "--prompts", "{dir}/p.txt"],
        "is a character device; give a regular file",
        {"s.json": schedule()},
        symlinks={"p.txt": "/dev/zero"},
    ),
    Case("prompt file a named pipe", [*EVAL, "--prompts", "{dir}/p.txt"], "is a named pipe", {"s.json": schedule(), "p.txt": FIFO}),
    # search configs
    Case("config file missing", ["search", "launch", "{dir}/none.toml", "--db", "{db}"], "cannot read search config"),
    Case("config path is a folder", ["search", "launch", "{dir}", "--db", "{db}"], "is a directory"),
    Case("config not TOML", LAUNCH, "is not valid TOML", config("steps = = 4")),
    Case("config a link to /dev/zero", LAUNCH, "is a character device; give a regular file", symlinks={"c.toml": "/dev/zero"}),
    Case("config a named pipe", LAUNCH, "is a named pipe; give a regular file", config(FIFO)),
    Case("config file over 16 MiB", LAUNCH, "is larger than 16 MiB", config(OVERSIZED)),
    Case(
        "population of a billion",
        LAUNCH,
        "[proposer] population must be an integer from 2 to 10,000, got 1000000000",
        config(VALID + "[proposer]\npopulation = 1000000000\n"),
    ),
    Case(
        "a thousand local workers",
        LAUNCH,
        "[dispatch] workers = 1000 but a local Ray instance",
        config(VALID + "[dispatch]\nworkers = 1000\n"),
    ),
    Case(
        "workers beyond any cluster",
        LAUNCH,
        "[dispatch] workers must be an integer from 1 to 1,024, got 5000",
        config(VALID + '[dispatch]\nworkers = 5000\naddress = "auto"\n'),
    ),
    Case(
        "timeout infinite",
        LAUNCH,
        "[dispatch] timeout_s must be a number above 0 and at most 604,800, got inf",
        config(VALID + "[dispatch]\ntimeout_s = inf\n"),
    ),
    Case(
        "space of a million steps",
        LAUNCH,
        "[space] steps must be an integer from 2 to 1,000, got 1000000",
        config('[space]\nsteps = 1000000\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "a billion images per evaluation",
        LAUNCH,
        "[evaluator] images must be an integer from 1 to 100,000, got 1000000000",
        config("[space]\nsteps = 4\n[evaluator]\nimages = 1000000000\n"),
    ),
    Case("config without [evaluator]", LAUNCH, "needs a [evaluator] table", config('[space]\nkind = "dato"\nsteps = 4\n')),
    Case(
        "config [space] without steps", LAUNCH, "[space] needs 'steps'", config('[space]\nkind = "dato"\n[evaluator]\nkind = "synthetic"\n')
    ),
    Case("misspelt config key", LAUNCH, "unknown key 'populaton' in [proposer]", config(VALID + "[proposer]\npopulaton = 8\n")),
    Case(
        "the same objective twice",
        LAUNCH,
        "objectives must be two metrics",
        config('objectives = ["error", "error"]\n[space]\nsteps = 4\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "an objective the evaluator lacks",
        LAUNCH,
        "objectives must be two metrics",
        config('objectives = ["fid", "cost"]\n[space]\nsteps = 4\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "reference point NaN",
        LAUNCH,
        "reference_point must be two finite numbers",
        config('reference_point = [nan, 1.0]\n[space]\nsteps = 4\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "seed beyond 32 bits",
        LAUNCH,
        "seed must be an integer",
        config('seed = 4294967296\n[space]\nsteps = 4\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "space ratios out of range",
        LAUNCH,
        "[space] describes invalid schedules",
        config('[space]\nsteps = 4\nratios = [0.9]\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "space with an unknown method",
        LAUNCH,
        "unknown method 'tome'",
        config('[space]\nsteps = 4\nmethod = { name = "tome" }\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "dsap interval 0",
        LAUNCH,
        "[space] intervals must be an integer from 1 to 1,000, got 0",
        config('[space]\nkind = "dsap"\nsteps = 4\nintervals = [0]\n[evaluator]\nkind = "synthetic"\n'),
    ),
    Case(
        "Optuna sampler with pymoo",
        LAUNCH,
        "sampler 'tpe' is an Optuna sampler",
        config(VALID + '[proposer]\nbackend = "pymoo"\nsampler = "tpe"\n'),
    ),
    Case("more GPUs than the cluster has", LAUNCH, "need 1 GPUs", config(VALID + "[dispatch]\nworkers = 1\ngpus_per_worker = 1\n")),
    Case("guardrail without a bound", LAUNCH, "needs min or max", config('guardrails = [{ metric = "error" }]\n' + VALID)),
    Case(
        "guardrail bounded by the full model on the synthetic problem",
        LAUNCH,
        "guardrail on 'error' is bounded by the full model's value, but the evaluator measures no such metric",
        config('guardrails = [{ metric = "error", max = "full" }]\n' + VALID),
    ),
    Case("guardrails not a list", LAUNCH, "guardrails must be a list of tables", config('guardrails = "caption_accuracy"\n' + VALID)),
    Case(
        "baseline interval 0",
        LAUNCH,
        "[baselines] deepcache_intervals must be an integer from 1",
        config(VALID + "[baselines]\ndeepcache_intervals = [0]\n"),
    ),
    Case(
        "validation factor 0",
        LAUNCH,
        "[validation] factor must be an integer from 1 to 1,000, got 0",
        config(VALID + "[validation]\nfactor = 0\n"),
    ),
    # databases
    Case("database is a text file", ["front", "1", "--db", "{db}"], "is not a prunesched database", db="text"),
    Case("database of another program", ["front", "1", "--db", "{db}"], "has tables but no prunesched schema version", db="foreign"),
    Case("database from a newer prunesched", ["front", "1", "--db", "{db}"], "was written by a newer prunesched", db="newer"),
    Case("database file empty", ["front", "1", "--db", "{db}"], "is empty", db="empty"),
    Case("database missing", ["front", "1", "--db", "{dir}/none.db"], "no database at"),
    Case("database URL of an unknown kind", ["front", "1", "--db", "bogus://x"], "the database location is not usable"),
    # ids and picks
    Case("unknown search id (front)", ["front", "9", "--db", "{db}"], "no search with id 9"),
    Case("unknown search id (export)", ["export", "9", "-o", "{dir}/x.json", "--db", "{db}"], "no search with id 9"),
    Case("unknown search id (history)", ["history", "--search", "9", "--db", "{db}"], "no search with id 9"),
    Case("unknown search id (resume)", ["search", "resume", "9", "--db", "{db}"], "no search with id 9"),
    Case("unknown generation", ["front", "1", "--generation", "7", "--db", "{db}"], "has no generation 7"),
    Case("unknown candidate", ["export", "1", "--candidate", "999", "-o", "{dir}/x.json", "--db", "{db}"], "has no candidate 999"),
    Case("export onto the database", ["export", "1", "-o", "{db}", "--db", "{db}"], ONTO_DB),
    Case("export weight NaN", ["export", "1", "--weight", "nan", "-o", "{dir}/x.json", "--db", "{db}"], "must be a finite number >= 0"),
    Case("resume a finished search", ["search", "resume", "1", "--db", "{db}"], "has finished; there is nothing to resume"),
    Case(
        "export a candidate and a pick",
        ["export", "1", "--candidate", "2", "--pick", "fastest", "-o", "{dir}/x.json", "--db", "{db}"],
        "--candidate names the schedule to export; --pick (which pick from a front) cannot come with it",
    ),
    Case("unknown search id (report)", ["report", "9", "-o", "{dir}/r.html", "--db", "{db}"], "no search with id 9"),
    Case(
        "unknown search id (export-optuna)",
        ["export-optuna", "9", "--storage", "sqlite:///{dir}/o.db", "--db", "{db}"],
        "no search with id 9",
    ),
    Case("compare one search", ["compare", "1", "-o", "{dir}/f.png", "--db", "{db}"], "compare needs two or more search ids"),
    Case("metric range without bounds", ["history", "--search", "1", "--range", "fid", "--db", "{db}"], "'fid' is not METRIC:LOW:HIGH"),
    # the command line itself
    Case("search id not a number", ["front", "abc", "--db", "{db}"], "'abc' is not a valid integer"),
    Case("unknown status filter", ["history", "--search", "1", "--status", "lost", "--db", "{db}"], "Invalid value for '--status'"),
    Case("limit 0", ["history", "--search", "1", "--limit", "0", "--db", "{db}"], "Invalid value for '--limit'"),
    Case("filter without a search", ["history", "--status", "done", "--db", "{db}"], "filter one search's evaluations"),
    Case("unknown command", ["frnt", "1"], "No such command 'frnt'"),
    # integers beyond what a database column holds
    Case("search id beyond 64 bits (front)", ["front", BIG, "--db", "{db}"], IN_RANGE),
    Case("search id beyond 64 bits (history)", ["history", "--search", BIG, "--db", "{db}"], IN_RANGE),
    Case("search id beyond 64 bits (resume)", ["search", "resume", BIG, "--db", "{db}"], IN_RANGE),
    Case("generation beyond 64 bits", ["front", "1", "--generation", BIG, "--db", "{db}"], IN_RANGE),
    Case("limit beyond 64 bits", ["history", "--search", "1", "--limit", BIG, "--db", "{db}"], "is not in the range 1<=x<="),
    Case("candidate beyond 64 bits", ["export", "1", "--candidate", BIG, "-o", "{dir}/x.json", "--db", "{db}"], IN_RANGE),
    # output paths: never the database, in any spelling; only a regular file or a new name
    Case("report onto the database", ["report", "1", "-o", "{db}", "--images", "0", "--db", "{db}"], ONTO_DB),
    Case("report onto the database's WAL", ["report", "1", "-o", "{db}-wal", "--images", "0", "--db", "{db}"], ONTO_DB),
    Case("compare onto the database", ["compare", "1", "1", "-o", "{db}", "--db", "{db}"], ONTO_DB),
    Case("export onto the database through '..'", ["export", "1", "-o", "{dir}/../search.db", "--db", "{db}"], ONTO_DB),
    Case(
        "export onto a symbolic link to the database",
        ["export", "1", "-o", "{dir}/l.db", "--db", "{db}"],
        ONTO_DB,
        symlinks={"l.db": "{db}"},
    ),
    Case(
        "export onto a hard link of the database", ["export", "1", "-o", "{dir}/h.db", "--db", "{db}"], ONTO_DB, hardlinks={"h.db": "{db}"}
    ),
    Case("export-optuna into the database", ["export-optuna", "1", "--storage", "sqlite:///{db}", "--db", "{db}"], ONTO_DB),
    Case(
        "export onto a symbolic link",
        ["export", "1", "-o", "{dir}/l.json", "--db", "{db}"],
        "is a symbolic link; " + NOT_REGULAR,
        {"t.json": "kept"},
        symlinks={"l.json": "{dir}/t.json"},
    ),
    Case(
        "report onto a dangling symbolic link",
        ["report", "1", "-o", "{dir}/r.html", "--images", "0", "--db", "{db}"],
        "is a symbolic link; " + NOT_REGULAR,
        symlinks={"r.html": "{dir}/nowhere.html"},
    ),
    Case("export onto a device", ["export", "1", "-o", "/dev/null", "--db", "{db}"], "is a character device; " + NOT_REGULAR),
    Case(
        "eval result onto a symbolic link",
        [*EVAL, "-o", "{dir}/l.json"],
        "is a symbolic link; " + NOT_REGULAR,
        {"s.json": schedule(), "t.json": "kept"},
        symlinks={"l.json": "{dir}/t.json"},
    ),
    Case("compare onto a device", ["compare", "1", "1", "-o", "/dev/full", "--db", "{db}"], "is a character device; " + NOT_REGULAR),
    # in-memory databases keep nothing
    Case(
        "launch into an in-memory database",
        ["search", "launch", "{dir}/c.toml", "--db", ":memory:"],
        "is an in-memory database",
        config(VALID),
    ),
    Case("launch into sqlite://", ["search", "launch", "{dir}/c.toml", "--db", "sqlite://"], "is an in-memory database", config(VALID)),
    Case("upgrade an in-memory database", ["db", "upgrade", "--db", "sqlite:///:memory:"], "is an in-memory database"),
    Case(
        "export-optuna into an in-memory storage",
        ["export-optuna", "1", "--storage", "sqlite://", "--db", "{db}"],
        "is an in-memory database",
    ),
]
