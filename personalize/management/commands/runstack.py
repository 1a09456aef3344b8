"""Run the whole service locally: migrations, demo editor, Redis, one Celery worker with beat, web server.

    python manage.py runstack            # what `make run` does

Ctrl-C stops everything this command started. It never falls back to Celery's eager mode: the worker is
a real process consuming from the broker.
"""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from personalize.accounts import create_or_get_editor
from personalize.devstack import ensure_redis, worker_command

DEMO_EDITOR = "demo"
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = "Start the whole service locally (web on 127.0.0.1:8000, one worker, beat, Redis if needed)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address the web server binds")
        parser.add_argument("--no-demo", action="store_true", help="do not create the demo editor")

    def handle(self, *args, addr, no_demo, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        if not no_demo:
            user, token = create_or_get_editor(DEMO_EDITOR, password=DEMO_PASSWORD)
            self.stdout.write(
                f"Demo editor '{user.username}' (password '{DEMO_PASSWORD}'), API token: {token}"
            )

        # `kill` (SIGTERM) stops everything too, like Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        children: list[subprocess.Popen] = []
        redis_process = ensure_redis(settings.CELERY_BROKER_URL, settings.VAR_DIR)
        if redis_process:
            children.append(redis_process)
            self.stdout.write(f"Started a local redis-server for {settings.CELERY_BROKER_URL}.")
        else:
            self.stdout.write(f"Using the Redis at {settings.CELERY_BROKER_URL}.")

        python = sys.executable
        worker = worker_command(
            "default,training", "local@%h", "--loglevel", "INFO",
            "--beat", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
        )  # fmt: skip
        web = [python, "manage.py", "runserver", addr, "--noreload"]
        try:
            children.append(subprocess.Popen(worker))
            children.append(subprocess.Popen(web))
            self.stdout.write(
                f"Serving on http://{addr}/  (health: /healthz, API docs: /api/docs/). Ctrl-C stops."
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            self.stderr.write("A service process exited; stopping the others.")
        except KeyboardInterrupt:
            self.stdout.write("Stopping.")
        finally:
            _stop(children)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(children: list[subprocess.Popen]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
