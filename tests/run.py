"""The test command (`make test`): check the import contracts, pick real services, then run pytest.

Import contracts: `lint-imports` checks the one-way dependencies declared in pyproject.toml
([tool.importlinter], docs/architecture.md) first; a broken contract fails the run before any test.
Database: $DATABASE_URL if set; else the PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth) when
one answers, as on CI; else SQLite. Broker: $REDIS_URL if set; else the Redis on 127.0.0.1:6379 when one
answers (its database 15, emptied first); else a redis-server this script starts on a free port and
stops at the end. A run that collects no tests fails.
Browser tests (tests/test_browser.py) run when `chromium` and `chromedriver` are on PATH; otherwise this says
plainly that they are skipped (with BROWSER_TESTS=required, as .ci/run sets it, they fail instead).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from personalize.devstack import free_port, redis_answers, start_redis  # noqa: E402

CI_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
CI_REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own, so a developer's queues are untouched


def postgres_answers(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def import_contracts_kept() -> bool:
    """Run lint-imports (installed beside this Python by the dev extras); its report names each broken import."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        print(
            f"[tests] FAILED: {lint_imports} is missing; install the dev extras: pip install -e '.[server,dev]'"
        )
        return False
    # No cache: the check takes well under a second, and it would leave a folder in the work tree.
    code = subprocess.call([str(lint_imports), "--no-logo", "--no-cache"], cwd=ROOT)
    if code != 0:
        print(
            "[tests] FAILED: the import contracts in pyproject.toml ([tool.importlinter]) are broken, see "
            "above. Dependencies point one way: workers -> personalize -> rlcore; personalize reaches "
            "workers only through the Celery app (workers.celery: send tasks by name), rlcore imports "
            "nothing of ours; inside rlcore, cli -> prior -> agent -> modelfile -> networks -> features "
            "-> operations, and a new rlcore module must be given a layer (rlcore-layers). Move the "
            "import, do not loosen the contract (docs/architecture.md).",
            file=sys.stderr,
        )
    return code == 0


def report_browser() -> None:
    """Say up front whether the browser tests will run: a skip must not pass unnoticed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium and chromedriver:
        print(f"[tests] browser tests: {chromium} through {chromedriver}", flush=True)
    elif os.environ.get("BROWSER_TESTS") == "required":
        print(
            "[tests] browser tests: REQUIRED but chromium or chromedriver is missing; they will fail",
            flush=True,
        )
    else:
        print(
            "[tests] browser tests: SKIPPED, no chromium and chromedriver on PATH "
            "(Debian/Ubuntu: apt-get install chromium chromium-driver)",
            flush=True,
        )


def main() -> int:
    if not import_contracts_kept():
        return 1
    report_browser()
    env = dict(os.environ)
    scratch = Path(tempfile.mkdtemp(prefix="personalize-tests-"))
    env.setdefault("VAR_DIR", str(scratch / "var"))
    env.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")

    if not env.get("DATABASE_URL") and postgres_answers(CI_POSTGRES_URL):
        env["DATABASE_URL"] = CI_POSTGRES_URL
    print(f"[tests] database: {env.get('DATABASE_URL') or 'SQLite (no PostgreSQL answered)'}", flush=True)

    redis_process = None
    if not env.get("REDIS_URL"):
        if redis_answers(CI_REDIS_URL):
            env["REDIS_URL"] = CI_REDIS_URL
            # Messages left by an interrupted run name jobs of a database that no longer exists.
            redis.Redis.from_url(CI_REDIS_URL).flushdb()
        else:
            port = free_port()
            redis_process = start_redis(port, scratch / "redis", scratch / "redis.log")
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    print(
        f"[tests] broker: {env['REDIS_URL']}{' (started for this run)' if redis_process else ''}", flush=True
    )

    try:
        code = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env)
    finally:
        if redis_process:
            redis_process.terminate()
            redis_process.wait(timeout=10)
    if code == 5:
        print("[tests] FAILED: pytest collected no tests", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
