"""A Ray worker node lost mid-search costs only the evaluations it was running.

A real three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no CPU
and two worker nodes with one CPU each, so each evaluator actor lives on its own worker node).
A coordinator in a child process joins it; one worker node is removed while both evaluate. The
search must go on with the node it has, replace the lost actor once a new node brings room, and
finish with every finished evaluation kept and nothing but the lost in-flight work evaluated again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from prunesched.cli import main
from prunesched.storage import Store
from tests.reliability.crasher import ROOT
from tests.reliability.test_ray_lifecycle import gone, ray_processes
from tests.search.fakes import evaluated_hashes

CONFIG = {
    "seed": 3,
    "space": {"kind": "dato", "steps": 4},
    "evaluator": {"kind": "synthetic"},
    "proposer": {"population": 6, "generations": 2},
    "dispatch": {"workers": 2, "cpus_per_worker": 1, "timeout_s": 120, "retries": 2},
}
CHILD = """
import json, sys
from pathlib import Path
from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from tests.search.fakes import RecordingEvaluator
db, log, config = sys.argv[1:]
def progress(p):
    if p.workers_up < p.workers:
        print(f"progress: workers {p.workers_up}/{p.workers}, replaced {p.replaced}", flush=True)
launch(SearchConfig.from_dict(json.loads(config)), db, progress, factory=lambda: RecordingEvaluator(Path(log), delay_s=1.5))
"""


def test_a_lost_worker_node_costs_only_its_in_flight_evaluations(tmp_path, monkeypatch, observe):
    from ray.cluster_utils import Cluster

    ray_tmpdir = Path(tempfile.mkdtemp(prefix="psr", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmpdir))  # the cluster's sessions under a folder of this test's, not /tmp/ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}, shutdown_at_exit=False)
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        db, log = tmp_path / "s.db", tmp_path / "log"
        config = CONFIG | {"dispatch": CONFIG["dispatch"] | {"address": cluster.address}}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(log), json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 180
        while len(evaluated_hashes(log)) < 3:  # both workers busy, some evaluations finished
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0][-3000:]
            time.sleep(0.2)
        cluster.remove_node(doomed, allow_graceful=False)
        removed_at = len(evaluated_hashes(log))
        while len(evaluated_hashes(log)) < removed_at + 3:  # it goes on with the worker it has; the replacement has no room yet
            assert child.poll() is None and time.monotonic() < deadline + 60, child.communicate()[0][-3000:]
            time.sleep(0.2)
        during_gap = len(evaluated_hashes(log)) - removed_at
        cluster.add_node(num_cpus=1)
        output, _ = child.communicate(timeout=300)
    finally:  # not cluster.shutdown(): it also resets the Ray client state of this process, which the session's Ray uses
        for node in [*cluster.worker_nodes, cluster.head_node]:
            cluster.remove_node(node, allow_graceful=False)
        for pid in ray_processes(ray_tmpdir):  # the raylets' agents outlive them by a minute (prunesched/search/reaper.py)
            os.kill(pid, signal.SIGKILL)

    assert gone(ray_tmpdir, 30) == {}
    shutil.rmtree(ray_tmpdir, ignore_errors=True)
    assert child.returncode == 0, output[-3000:]
    store = Store(db)
    rows = store.evaluations(1)
    retried = [(c.id, e.attempts, e.error) for c, e in rows if e.attempts > 1]
    twice = [h for h, n in Counter(evaluated_hashes(log)).items() if n > 1]
    status = CliRunner().invoke(main, ["search", "status", "1", "--db", str(db)]).output.strip().splitlines()
    shown = [line for line in output.splitlines() if line.startswith("progress: ")]
    observe("node loss", removed_at=removed_at, with_one_node=during_gap, retried=retried, twice=twice)
    observe("node loss", progress=shown[:1], status=status[-1])
    assert store.search(1).status == "finished"
    assert all(e.status == "done" for _, e in rows)  # every candidate evaluated, none failed for the lost node
    assert len(twice) <= 1  # only what was running on the lost node ran again
    assert len(retried) == len(twice)
    assert shown and shown[0].startswith("progress: workers 1/2")  # the progress display says a worker is being replaced
    assert retried and status[-1] == f"search 1: 1 candidates retried: {retried[0][0]} (2 attempts)"
