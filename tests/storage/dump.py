"""A database's full content as SQL text, to prove a refused request changed nothing (WAL included)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def database_dump(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return list(connection.iterdump())
