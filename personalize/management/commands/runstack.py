"""Run the whole service locally: migrations, demo editor, Redis, one Celery worker, beat, web server.

    python manage.py runstack            # what `make run` does

Each service is a child process in a process group of its own, restarted when it exits (a crash, an
out-of-memory kill), with whatever it had started (a worker's pool processes) killed first. One that
keeps exiting stops the whole stack. Ctrl-C or SIGTERM stops everything; so does this command's own
death, even by SIGKILL (see personalize.devstack.spawn). It never falls back to Celery's eager mode: the
worker is a real process consuming from the broker.
"""

import signal
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from personalize.accounts import create_or_get_editor
from personalize.devstack import GaveUp, Supervisor, local_redis, spawn, worker_command

DEMO_EDITOR = "demo"
DEMO_PASSWORD = "demo-password"  # an editor (not staff) on a server bound to this machine only by default
CREATE_STAFF_HINT = (
    "No staff account yet: `.venv/bin/python manage.py createsuperuser` creates one for /admin/ and "
    "/admin/queues/."
)


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
        if not get_user_model().objects.filter(is_staff=True, is_active=True).exists():
            self.stdout.write(CREATE_STAFF_HINT)

        # `kill` (SIGTERM) and a closed terminal (SIGHUP) stop everything too, like Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, _interrupt)
        supervisor = Supervisor(log=lambda line: self.stderr.write(line))
        try:
            start_redis = local_redis(settings.CELERY_BROKER_URL, settings.VAR_DIR)
            if start_redis:
                supervisor.start("redis-server", start_redis)
                self.stdout.write(f"Started a local redis-server for {settings.CELERY_BROKER_URL}.")
            else:
                self.stdout.write(f"Using the Redis at {settings.CELERY_BROKER_URL}.")
            # Beat is a process of its own, not embedded in the worker (`worker -B`): a worker that dies
            # must not leave a beat behind, and a restarted worker must not start a second one.
            worker = worker_command("default,training", "local@%h", "--loglevel", "INFO")
            beat = [
                sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
                "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
            ]  # fmt: skip
            web = [sys.executable, "manage.py", "runserver", addr, "--noreload"]
            supervisor.start("worker", lambda: spawn(worker))
            supervisor.start("beat", lambda: spawn(beat))
            supervisor.start("web server", lambda: spawn(web))
            self.stdout.write(
                f"Serving on http://{addr}/  (health: /healthz, API docs: /api/docs/). Ctrl-C stops."
            )
            supervisor.watch()
        except GaveUp as exc:
            raise CommandError(f"{exc}; stopped everything") from exc
        except KeyboardInterrupt:
            self.stdout.write("Stopping.")
        finally:
            supervisor.stop_all()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
