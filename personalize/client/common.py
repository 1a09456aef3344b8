"""What every command of `personalize-client` shares: exit codes, errors, messages and number formats."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from personalize.client.api import Unreachable

PROG = "personalize-client"

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed: a job failed or was cancelled, some uploads failed
EXIT_USAGE = 2  # bad arguments or configuration: a missing folder, no token
EXIT_UNREACHABLE = 3  # the server could not be reached
EXIT_AUTH = 4  # the server refused the token or the credentials
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the arguments or the configuration (exit code 2)."""


class LoginFailed(Exception):
    """The server refused a username and password (exit code 4)."""


def err(message: str) -> None:
    print(message, file=sys.stderr)


def fmt_delta_e(value) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def fmt_seconds(value) -> str:
    if not isinstance(value, int | float) or value < 0:
        return "-"
    value = round(value)
    return (
        f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"
        if value >= 3600
        else f"{value // 60}:{value % 60:02d}"
    )


def fmt_size(size) -> str:
    if not isinstance(size, int | float):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def personal_delta_e(metrics: dict | None, fallback=None):
    metrics = metrics or {}
    for key in ("val_delta_e_personal", "val_delta_e"):
        if isinstance(metrics.get(key), int | float):
            return metrics[key]
    return fallback


# A restarting server should not end a long wait: requests that cannot reach it are retried this long.
UNREACHABLE_GRACE_SECONDS = 60


def follow(
    state: dict,
    fetch: Callable[[], dict],
    is_final: Callable[[dict], bool],
    poll: float,
    bar,
    line: Callable[[dict], str],
    draw: Callable[[dict], None],
) -> dict:
    """Show `state`, then fetch it again every `poll` seconds until it is final; returns the final state.

    On a terminal `draw(state)` updates the tqdm `bar`; otherwise (a log) `line(state)` is written on each
    status change and every 10 % of its `progress`. The bar is closed at the end. Used to follow a training
    job and a bulk import, which both run on the server after the request.
    """
    last_status, last_decile = None, -1
    unreachable_since = None
    try:
        while True:
            if bar.disable:
                decile = int(max(0.0, min(1.0, float(state.get("progress") or 0))) * 10)
                if state.get("status") != last_status or decile > last_decile:
                    err(line(state))
                    last_status, last_decile = state.get("status"), decile
            else:
                draw(state)
                bar.refresh()
            if is_final(state):
                return state
            time.sleep(poll)
            try:
                state = fetch()
                unreachable_since = None
            except Unreachable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > UNREACHABLE_GRACE_SECONDS:
                    raise
    finally:
        bar.close()


# The process's umask, read once at import, before any thread runs: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomically(path: Path, text: str, mode: int = 0o666) -> None:
    """Never a half-written file: write a temporary file beside it, then rename it over `path`. The file
    gets `mode` less the umask, as open() would give it (0o600 for a file of secrets such as the config;
    mkstemp alone would leave every file its owner's only, sidecars on a shared drive included)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
