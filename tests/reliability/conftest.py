"""``observe``: what each reliability test saw, for the reliability page of the docs (``experiments/reliability.py``);
``finished_search``: a small finished search to run commands on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import launch


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``observe(section, **fields)`` appends one JSON line, with the test's name, to ``$PRUNESCHED_RELIABILITY_LOG`` when it is set."""
    path = os.environ.get("PRUNESCHED_RELIABILITY_LOG")

    def write(section: str, **fields: Any) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"section": section, "test": request.node.name, **fields}, default=str) + "\n")

    return write


@pytest.fixture(scope="module")
def finished_search(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database of a finished one-generation synthetic search (one per test module, which may change it)."""
    db = tmp_path_factory.mktemp("finished") / "s.db"
    config = {"space": {"kind": "dato", "steps": 4}, "evaluator": {"kind": "synthetic"}, "proposer": {"population": 4, "generations": 1}}
    launch(SearchConfig.from_dict(config), db)
    return db
