"""Atomic file writes on a local disk: the one naming rule for temporary files, and their clean-up.

A file written in place can be read half-written, or left half-written by a crash. Writing a temporary
file beside it, fsyncing and renaming it over the target (atomic within one filesystem) means a reader
sees the old file or the new one, never a mix. The temporary name carries the writer's process id, so two
processes writing the same target never share a temporary file; `remove` deletes the target together with
any temporary file a crashed writer left behind, whatever its process id.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

TEMP_MARK = ".tmp"


def temporary_path(path: str | Path) -> Path:
    """Where this process writes `path` before renaming it into place: `NAME.tmp<pid>`."""
    path = Path(path)
    return path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")


def temporary_files(path: str | Path) -> list[Path]:
    """The temporary files of `path` that any process (this one or a dead one) left beside it."""
    path = Path(path)
    return sorted(path.parent.glob(glob.escape(path.name) + TEMP_MARK + "*"))


def is_temporary(path: str | Path) -> bool:
    """True for a name `temporary_path` makes (NAME.tmp<digits>)."""
    stem, mark, pid = Path(path).name.rpartition(TEMP_MARK)
    return bool(stem and mark and pid.isdigit())


def write_atomic(path: str | Path, data: bytes) -> int:
    """Write `data` to `path` atomically (temporary file, fsync, rename); returns the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return len(data)


def remove(path: str | Path) -> None:
    """Delete `path` and every temporary file of it; missing files are fine."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for temporary in temporary_files(path):
        temporary.unlink(missing_ok=True)
