"""Every reader of a user-given file goes through ``prunesched.files.read_text``: a device, a named pipe, a folder
or an oversized file is refused in one line at once, never read forever or waited on."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prunesched import Schedule
from prunesched.errors import ConfigError, PruneschedError, ScheduleError
from prunesched.evaluation import prompts
from prunesched.files import MAX_DOCUMENT_BYTES, read_text
from prunesched.search.config import SearchConfig

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "run.py"
spec = importlib.util.spec_from_file_location("experiments_run", SCRIPT)
assert spec is not None and spec.loader is not None
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

READERS: dict[str, tuple[Callable[[Path], Any], type[PruneschedError], str]] = {
    "Schedule.load": (Schedule.load, ScheduleError, "cannot read schedule file at"),
    "Schedule.load_dato": (Schedule.load_dato, ScheduleError, "cannot read DaTo table file at"),
    "SearchConfig.load": (SearchConfig.load, ConfigError, "cannot read search config at"),
    "experiments/run.py load": (run.load, ConfigError, "cannot read experiment config at"),
    "text prompts": (prompts.text_prompts, ConfigError, "cannot read a text file of prompts at"),
    "PartiPrompts": (prompts.parti_prompts, ConfigError, "cannot read a PartiPrompts TSV file at"),
    "COCO captions": (prompts.coco_captions, ConfigError, "cannot read a COCO captions annotation file at"),
}


def refused(reader: str, path: Path, expect: str) -> None:
    read, error, where = READERS[reader]
    with pytest.raises(error) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(where) and expect in message and "\n" not in message, message


@pytest.mark.timeout(10)  # before the fix, /dev/zero was read until memory ran out and a named pipe blocked forever
@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_a_device_a_named_pipe_and_a_folder_at_once(reader, tmp_path):
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe")
    refused(reader, tmp_path / "zero", "is a character device; give a regular file")
    refused(reader, tmp_path / "pipe", "is a named pipe; give a regular file")
    refused(reader, tmp_path, "is a folder; give a regular file")
    refused(reader, tmp_path / "missing", "No such file or directory")


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_a_file_over_its_limit(reader, tmp_path, monkeypatch):
    monkeypatch.setattr(prompts, "MAX_PROMPT_FILE_BYTES", 1024)  # the prompt limit is 256 MiB; this one is read at 1 KiB
    limit, expect = (1024, "1,024 bytes") if reader in ("text prompts", "PartiPrompts", "COCO captions") else (MAX_DOCUMENT_BYTES, "16 MiB")
    with (tmp_path / "big").open("wb") as file:
        file.truncate(limit + 1)  # sparse: no time to write
    refused(reader, tmp_path / "big", f"is larger than {expect}; give a file of at most {expect}")


def test_read_text_reads_a_regular_file_through_a_link_up_to_its_limit(tmp_path):
    (tmp_path / "a.txt").write_text("héllo")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    assert read_text(tmp_path / "link", "text", ConfigError, limit=6) == "héllo"  # 6 bytes of UTF-8
    with pytest.raises(ConfigError, match="is larger than 5 bytes; give a file of at most 5 bytes"):
        read_text(tmp_path / "a.txt", "text", ConfigError, limit=5)
    (tmp_path / "b.txt").write_bytes(b"\xff")
    with pytest.raises(ConfigError, match=r"^cannot read text at '.*b.txt': it is not UTF-8 text$"):
        read_text(tmp_path / "b.txt", "text", ConfigError)
