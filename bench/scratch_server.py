"""A scratch copy of the service for the HTTP benchmarks (bench_api.py, bench_shoot.py).

Its own database (a SQLite file unless a URL is given) and media root in a temporary folder, migrated, one
editor and its token, and gunicorn on a free port, answering before the context is entered; production
settings (DEBUG off) and no throttle on predictions, so that the benchmark measures the service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from personalize.devstack import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ScratchServer:
    url: str  # http://127.0.0.1:PORT
    token: str
    env: dict  # the server's environment (DATABASE_URL, MEDIA_ROOT, ...)
    scratch: Path  # the temporary folder holding its state
    process: subprocess.Popen  # gunicorn's master process


def scratch_settings(scratch: Path, database_url: str = "") -> dict[str, str]:
    """The service's settings for a benchmark: its own var/ and media in `scratch`, no throttling."""
    return {
        "VAR_DIR": str(scratch),
        "DATABASE_URL": database_url or f"sqlite:///{scratch / 'db.sqlite3'}",
        "MEDIA_ROOT": str(scratch / "media"),
        "THROTTLE_PREDICTIONS": "1000000/hour",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "OMP_NUM_THREADS": "1",
    }


@contextmanager
def scratch_server(prefix: str, web_workers: int, database_url: str = "") -> Iterator[ScratchServer]:
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**os.environ, **scratch_settings(scratch, database_url)}
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    created = subprocess.run(
        [python, "manage.py", "createeditor", f"bench{os.getpid()}"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [python, "-m", "gunicorn", "personalize.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(web_workers), "--preload", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url)
        yield ScratchServer(url, created.stdout.split()[-1], env, scratch, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_answering(url: str, timeout: float = 60) -> None:
    """Until the server answers at all. It asks for the sign-in page: /healthz says 503 (no worker runs
    here), which the server logs as an error in the benchmark's output."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/signin", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
