"""Which Ray a search runs on, and what it leaves behind.

- Without an address a search starts its own private Ray instance, even when a Ray cluster runs
  on the machine (a bare ``ray.init()`` joins that one).
- An address where nothing answers, or one in a form that is refused, is one error line, exit
  code 2, within seconds (``ray.init`` retries a dead address for minutes).
- A coordinator SIGKILLed mid-search leaves no process of its private Ray instance behind.

Each test runs the coordinator in a child process: a private instance is only started by a
process that has none, and this test session shares one (``ray_local``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from prunesched.cli import main
from tests.reliability.crasher import ROOT, crash

SEARCH = {
    "space": {"kind": "dato", "steps": 4},
    "evaluator": {"kind": "synthetic"},
    "proposer": {"population": 2, "generations": 1},
    "dispatch": {"workers": 1, "timeout_s": 60},
}
TOML = '[space]\nkind = "dato"\nsteps = 4\n\n[evaluator]\nkind = "synthetic"\n\n[proposer]\npopulation = 2\ngenerations = 1\n'


def ray_processes(folder: Path) -> dict[int, str]:
    """Live (not zombie) processes of this user that name ``folder`` in their command line or hold a file under it: pid -> name."""
    prefix = str(folder.resolve()) + "/"
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            files = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if prefix in command or any(f.startswith(prefix) for f in files):
            found[int(proc.name)] = command.strip()[:80]
    return found


def gone(folder: Path, within_s: float) -> dict[int, str]:
    """The processes of ``folder`` still alive after waiting up to ``within_s`` for them to end."""
    deadline = time.monotonic() + within_s
    while (left := ray_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_tmpdir() -> Iterator[Path]:
    """A Ray temp root of its own (short: Ray's socket paths must fit in 107 bytes), apart from other Ray users of the machine."""
    folder = Path(tempfile.mkdtemp(prefix="psr", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def running_cluster(ray_tmpdir: Path) -> Iterator[Path]:
    """A Ray cluster started by ``ray start --head`` in another process, as a user would; stopped, every process of it, after.

    ``RAY_TMPDIR`` puts its sessions and its ``ray_current_cluster`` file (where ``ray.init()`` looks for a running
    cluster) under ``ray_tmpdir`` instead of ``/tmp/ray``; yields ``ray_tmpdir / "ray"``.
    """
    env = os.environ | {"RAY_TMPDIR": str(ray_tmpdir), "RAY_AUTH_MODE": "disabled"}
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={free_port()}", "--num-cpus=1"]
    head = subprocess.Popen(
        [*command, "--include-dashboard=false", "--disable-usage-stats", "--block"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    root = ray_tmpdir / "ray"
    deadline = time.monotonic() + 120
    while not (root / "ray_current_cluster").exists() or not list(root.glob("session_*/logs/raylet.out")):
        assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
        time.sleep(0.5)
    time.sleep(2)  # the raylet registers with the GCS
    try:
        yield root
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # a graceful stop of 'ray start --block' takes 30 s and more here
        head.wait(timeout=30)
        for pid in ray_processes(root):  # the raylet's agents outlive it by a minute (see prunesched/search/reaper.py)
            os.kill(pid, signal.SIGKILL)
        assert gone(root, 30) == {}


def test_a_search_without_address_starts_its_own_ray_instead_of_joining_one_running_here(running_cluster: Path, tmp_path, observe):
    (cluster_session,) = running_cluster.glob("session_2*")
    (tmp_path / "c.toml").write_text(TOML + "\n[dispatch]\nworkers = 1\n")
    env = os.environ | {"RAY_TMPDIR": str(running_cluster.parent), "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-c", "from prunesched.cli import main; main()", "search", "launch", str(tmp_path / "c.toml")]
    command += ["--db", str(tmp_path / "s.db")]
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = child.communicate(timeout=300)

    own = list(running_cluster.glob(f"session_2*_{child.pid}"))
    joined = list((cluster_session / "logs").glob(f"python-core-driver-*_{child.pid}.log"))
    observe("ray lifecycle", own_session=[p.name for p in own], drivers_on_the_running_cluster=[p.name for p in joined])
    assert child.returncode == 0, output[-2000:]
    assert "search 1 finished" in output
    assert joined == []  # it never connected to the cluster running here
    assert len(own) == 1  # it started its own instance, named after it
    assert gone(own[0], 20) == {}  # and that instance ended with it


@pytest.mark.parametrize(
    ("address", "expect"),
    [
        ("127.0.0.1:1", "cannot join the Ray cluster at '127.0.0.1:1': no answer from 127.0.0.1:1"),
        ("ray://127.0.0.1:10001", "Ray Client (ray://) is not supported"),
        ("head-without-port", "is not 'auto' or host:port"),
    ],
)
def test_an_address_nobody_answers_or_of_a_refused_form_is_one_line_and_exit_code_2_within_seconds(tmp_path, address, expect, observe):
    (tmp_path / "c.toml").write_text(TOML)
    start = time.monotonic()
    result = CliRunner().invoke(main, ["search", "launch", str(tmp_path / "c.toml"), "--db", str(tmp_path / "s.db"), "--address", address])
    seconds = time.monotonic() - start
    lines = result.output.strip().splitlines()
    observe("ray lifecycle", address=address, exit_code=result.exit_code, observed=lines[-1:], seconds=round(seconds, 1))
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], result.output
    assert seconds < 15


def test_a_sigkilled_coordinator_leaves_no_process_of_its_ray_instance(ray_tmpdir: Path, tmp_path, monkeypatch, observe):
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmpdir))  # the child's Ray instance, under a folder of this test's
    pid = crash(tmp_path / "s.db", tmp_path / "log", "dispatch", 1, SEARCH, private=True)

    (session,) = (ray_tmpdir / "ray").glob(f"session_2*_{pid}")
    left = gone(session, 15)
    observe("ray lifecycle", session=session.name, left_after_15_s=left)
    assert left == {}, f"left running: {json.dumps(left)}"
