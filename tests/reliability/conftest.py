"""``observe``: what each reliability test saw, for the reliability page of the docs (``experiments/reliability.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``observe(section, **fields)`` appends one JSON line, with the test's name, to ``$PRUNESCHED_RELIABILITY_LOG`` when it is set."""
    path = os.environ.get("PRUNESCHED_RELIABILITY_LOG")

    def write(section: str, **fields: Any) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"section": section, "test": request.node.name, **fields}, default=str) + "\n")

    return write
