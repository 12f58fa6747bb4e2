"""The documentation pages and their fenced code blocks, for the tests that check the docs against the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]


def code_blocks(page: Path, language: str) -> list[str]:
    """The contents of the page's fenced blocks of ``language`` (e.g. "bash", "python"), in page order."""
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)
