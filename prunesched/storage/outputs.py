"""The files commands write beside a search database (schedules, reports, plots): never onto it, never through a link.

An output path must be a new name or an existing regular file. Anything else is refused in one
line: a symbolic link (renaming over it would replace the link, not write where it points), a
folder, a device, a pipe or a socket, and every spelling (relative, through a symbolic link, a
hard link) of the search database's own files (the database, its ``-wal``, ``-shm`` and
``-journal``), compared by resolved path and by (device, inode). A file is written whole or not
at all: into ``.NAME.partial`` beside it, synced, then renamed over the name, so a crash or a
full disk never leaves a half-written file at the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from prunesched.errors import OutputError
from prunesched.files import KINDS

DATABASE_FILES = ("", "-wal", "-shm", "-journal")
"""The suffixes of the files SQLite keeps for a database."""


def check_output(path: str | Path, database: Path | None) -> Path:
    """``path`` as a :class:`Path` if a command may write it (see the module docstring), else :class:`OutputError`.

    ``database`` is the search database's SQLite file (``Store.file``; None for other databases).
    Every command that writes a file calls this before any work, so a refusal costs nothing.
    """
    target = Path(path)
    if database is not None and any(_same_file(target, Path(f"{database}{end}")) for end in DATABASE_FILES):
        raise OutputError(f"the output path {str(path)!r} is the search database {str(database)!r} or its journal; write to another file")
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise OutputError(f"the output path {str(path)!r} is {kind}; an output path must be a regular file or a new name")
    return target


def write_output(path: str | Path, content: bytes, database: Path | None) -> Path:
    """Write ``content`` to ``path`` all or nothing, after :func:`check_output`; returns the path.

    Any failure of the file system (a missing folder, no permission, a full disk) is one
    :class:`OutputError` line, and the partial file is removed.
    """
    target = check_output(path, database)
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.unlink(missing_ok=True)  # a partial file a crash left behind; a link there is removed, not followed
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return target


def _same_file(path: Path, database_file: Path) -> bool:
    """Whether ``path`` names ``database_file``, by resolved path or by (device, inode)."""
    try:
        if path.resolve() == database_file.resolve():
            return True
        return os.path.samefile(path, database_file)
    except (OSError, RuntimeError):  # one is missing (or a loop of links): they cannot be one file
        return False
