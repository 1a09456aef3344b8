"""Celery configuration: reliability first, because training jobs are long and workers get killed.

The job row in the database is the source of truth (see personalize/jobs.py); these settings make sure the
broker side never loses a message and never runs one twice while a worker is alive.

This is the one module of workers that personalize imports (to send tasks by name, and for the dashboard's
inspection): it imports nothing of ours, and names the tasks instead of importing them, so that sending a
job never loads the worker code. An import-linter contract in pyproject.toml keeps it that way.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")

# Task names, the contract between the web side that sends and the workers that run (workers/tasks.py).
RUN_TRAINING_JOB = "workers.tasks.run_training_job"
SWEEP_STALE_JOBS = "workers.tasks.sweep_stale_jobs"
CLEAN_ORPHAN_FILES = "workers.tasks.clean_orphan_files"
RUN_PAIR_IMPORT = "workers.tasks.run_pair_import"
SWEEP_STALE_IMPORTS = "workers.tasks.sweep_stale_imports"
PING = "workers.tasks.ping"

app = Celery("workers", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def _configure() -> None:
    from django.conf import settings

    # Redis redelivers an unacknowledged message after the visibility timeout (celery#5935): it must be
    # longer than the longest job. Celery reads it from the broker options, the result backend options
    # and, for the Redis transport's unacked restore, the top-level visibility_timeout.
    transport = {"visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT}
    app.conf.update(
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=settings.CELERY_VISIBILITY_TIMEOUT,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_track_started=True,
        task_default_queue="default",
        task_routes={RUN_TRAINING_JOB: {"queue": "training"}},
        result_expires=24 * 3600,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        beat_schedule={
            "sweep-stale-jobs": {
                "task": SWEEP_STALE_JOBS,
                "schedule": settings.SWEEP_INTERVAL_SECONDS,
            },
            "sweep-stale-imports": {
                "task": SWEEP_STALE_IMPORTS,
                "schedule": settings.SWEEP_INTERVAL_SECONDS,
            },
            "clean-orphan-files": {"task": CLEAN_ORPHAN_FILES, "schedule": 3600.0},
        },
        worker_send_task_events=True,
        task_send_sent_event=True,
    )


_configure()
