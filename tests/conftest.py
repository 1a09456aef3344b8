"""Shared fixtures. Tests talk to real services: the database and Redis that tests/run.py chose."""

import ctypes
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from personalize.devstack import worker_command

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def checkpoint_dir(tmp_path, settings):
    """The workers' local checkpoints (not media storage), per test; subprocess_env uses the same."""
    settings.CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def minor_faults_printed(code: str, **env) -> float:
    """Runs `code` in a fresh Python (Django's settings module set, then env) and returns the number it printed
    last: the page faults it counted (rlcore/malloc.py's tests)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "personalize.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.split()[-1])


def database_url_for_subprocess() -> str:
    """The URL of the database this test session really uses (the test database, not the configured one)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def subprocess_env(media_root: Path, **overrides: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        MEDIA_ROOT=str(media_root),
        CHECKPOINT_DIR=settings.CHECKPOINT_DIR,
        REDIS_URL=settings.CELERY_BROKER_URL,
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def start_worker(
    env: dict, name: str, queues: str = "default,training", log_path: Path | None = None
) -> subprocess.Popen:
    """Start a real `celery -A workers worker` process and wait until it answers a ping."""
    from workers import app

    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    hostname = f"{name}-{os.getpid()}@%h"
    # Its own session, so that a test can SIGKILL the whole worker (main process and pool child) at once.
    process = subprocess.Popen(
        worker_command(queues, hostname, "--loglevel", "INFO", "--without-gossip", "--without-mingle"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=own_session_dying_with_parent,
    )
    try:
        wait_for(lambda: answers_ping(app, f"{name}-{os.getpid()}@"), timeout=60, message=f"worker {name}")
    except BaseException:
        kill_worker(process)
        raise
    return process


def answers_ping(app, prefix: str) -> bool:
    replies = app.control.ping(timeout=0.5) or []
    return any(key.startswith(prefix) for reply in replies for key in reply)


def own_session_dying_with_parent() -> None:
    """In a child before exec: its own session (so a test can SIGKILL the whole worker, pool children
    included) and SIGKILL when the test process dies, so that no worker outlives an interrupted run."""
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool children, as an out-of-memory kill of its container would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def start_beat(env: dict, schedule: Path, log_path: Path | None = None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "beat",
            "--schedule",
            str(schedule),
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=own_session_dying_with_parent,
    )


@contextmanager
def broker(url: str):
    """Point this process's Celery app (enqueueing, control) at another broker for the duration."""
    from workers import app

    def reset_pools():
        # Only drop references: kombu keeps one pool per broker URL and hands the same one back later.
        app._pool = None
        app.amqp._producer_pool = None
        app.control.mailbox.__dict__.pop("producer_pool", None)  # a cached_property over the old pool

    saved = app.conf.broker_url
    reset_pools()
    app.conf.broker_url = url
    try:
        yield
    finally:
        reset_pools()
        app.conf.broker_url = saved


def wait_for(predicate, timeout: float, interval: float = 0.3, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def celery_worker_process(transactional_db, media_root, tmp_path):
    """One real worker on both queues, sharing this test's database and media root."""
    process = start_worker(subprocess_env(media_root), "worker", log_path=tmp_path / "worker.log")
    yield process
    stop_process(process)
