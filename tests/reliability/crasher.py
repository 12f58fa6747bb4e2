"""A search coordinator that SIGKILLs itself at a chosen point, as a power cut or the OOM killer would.

    python -m tests.reliability.crasher DB LOG POINT COUNT CONFIG_JSON

It launches the search of CONFIG_JSON (the synthetic problem, recording every evaluation in
LOG) and dies at the COUNT-th passage through POINT:
  dispatch  right after a candidate is marked running (its evaluation in flight on a worker)
  commit    right after an evaluation is committed, before the proposer is told
  snapshot  inside the transaction that stores a generation and its snapshot, before it commits
  export    after the finished search's schedule file is written, before it is renamed into place
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch
from prunesched.search.review import export
from prunesched.storage import Store
from prunesched.storage.models import Generation
from tests.search.fakes import RecordingEvaluator

ROOT = Path(__file__).resolve().parents[2]
POINTS = ("dispatch", "commit", "snapshot", "export")
EXPORT = "exported.json"
"""Where the ``export`` point writes, next to the database."""


def crash(db: Path, log: Path, point: str, count: int, config: dict[str, Any], private: bool = False) -> int:
    """Run the search of ``config`` in a child coordinator and see it SIGKILL itself at ``point``; returns the child's pid.

    The child joins the test's Ray instance, or with ``private`` starts its own local one (as ``prunesched search launch`` does).
    """
    if not private:
        import ray

        config = config | {"dispatch": config.get("dispatch", {}) | {"address": ray.get_runtime_context().gcs_address}}
    command = [sys.executable, "-m", "tests.reliability.crasher", str(db), str(log), point, str(count), json.dumps(config)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            _, stderr = child.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    return child.pid


def arm(point: str, count: int) -> None:
    """Make the ``count``-th passage through ``point`` kill this process."""
    passages = 0

    def passage() -> None:
        nonlocal passages
        passages += 1
        if passages == count:
            os.kill(os.getpid(), signal.SIGKILL)

    if point == "snapshot":
        event.listen(Session, "after_flush", lambda session, _: passage() if any(isinstance(o, Generation) for o in session.new) else None)
    elif point == "export":
        after(Path, "replace", passage, before=True)
    else:
        after(Store, {"dispatch": "mark_running", "commit": "record"}[point], passage)


def after(owner: type, name: str, hook: Callable[[], None], before: bool = False) -> None:
    """Call ``hook`` after (or before) every call of the method ``owner.name``."""
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            hook()
        result = original(*args, **kwargs)
        if not before:
            hook()
        return result

    setattr(owner, name, wrapped)


def main() -> None:
    db, log, point, count, config = sys.argv[1:]
    arm(point, int(count))
    search_id = launch(SearchConfig.from_dict(json.loads(config)), db, factory=lambda: RecordingEvaluator(Path(log)))
    export(Store(db), search_id, Path(db).with_name(EXPORT))


if __name__ == "__main__":
    main()
