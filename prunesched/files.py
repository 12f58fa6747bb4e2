"""Reading the files a user names (schedules, DaTo tables, configs, prompt sets): regular files only, of a bounded size.

A path may lead anywhere: a symbolic link to ``/dev/zero`` reads forever, a named pipe blocks
until some other program writes to it, and a multi-gigabyte file fills memory before a parser
could object. :func:`read_text` is the one reader every such input goes through, so each of
these is refused in one line, at once, the same way for every kind of input.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from prunesched.errors import PruneschedError

MIB = 2**20
MAX_DOCUMENT_BYTES = 16 * MIB
"""Largest schedule, DaTo table or config file read: a 1,000-step schedule is about 40 KB."""
MAX_PROMPT_FILE_BYTES = 256 * MIB
"""Largest prompt file read: COCO's ``captions_train2017.json``, the largest in use, is about 92 MB."""

KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
}
"""What a path that is not a regular file is, by its file type, as the one-line errors name it."""


def read_text(path: str | Path, what: str, error: type[PruneschedError], limit: int = MAX_DOCUMENT_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path`` (symbolic links followed), else ``error`` in one line.

    ``what`` names the input in the error (``"schedule file"``); ``limit`` is the most bytes read.
    The file type is checked before opening, so a device is never opened, and again on the open
    file, which is opened non-blocking, so a named pipe swapped in between neither blocks nor is read.
    """
    where = f"cannot read {what} at {str(path)!r}"
    try:
        _check_regular(os.stat(path).st_mode, where, error)
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            _check_regular(os.fstat(file.fileno()).st_mode, where, error)
            data = file.read(limit + 1)
    except OSError as exc:
        raise error(f"{where}: {exc.strerror or exc}") from None
    if len(data) > limit:
        size = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit:,} bytes"
        raise error(f"{where}: it is larger than {size}; give a file of at most {size}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{where}: it is not UTF-8 text") from None


def _check_regular(mode: int, where: str, error: type[PruneschedError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{where}: it is {KINDS.get(stat.S_IFMT(mode), 'not a regular file')}; give a regular file")
