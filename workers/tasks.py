"""Celery tasks: small, idempotent, taking ids. The work is in training.py, the job's state in personalize.jobs.

Names come from the Celery app module (workers.celery), which is what the web side sends by.
"""

from django.conf import settings

from workers import training
from workers.celery import CLEAN_ORPHAN_FILES, PING, RUN_TRAINING_JOB, SWEEP_STALE_JOBS, app

# The budget is enforced inside rlcore; time limits catch a job that hangs past it. Each job is sent with
# limits from its own budget (personalize.jobs.enqueue); these are the ceiling for any message without.
SOFT_LIMIT = settings.TRAINING_MAX_SECONDS + settings.JOB_TIME_LIMIT_MARGIN
HARD_LIMIT = SOFT_LIMIT + 60

# Retries of a job after a database or broker error. Celery decides when: exponential backoff from 2 s
# (2, 4, 8, ... capped at 60 s), with full jitter so that the jobs one outage interrupted do not all
# come back at the same instant. The job's row decides how many: each delivery takes a lease, which is
# one attempt, and the attempt that reaches JOB_MAX_ATTEMPTS fails the job instead of raising
# (personalize.jobs.hand_back), which ends the retries. Celery's own count is unlimited (max_retries=None)
# so that it can never disagree with the job's; a failure before the lease is taken (the database down)
# uses no attempt and is retried until the database is back.
RETRY_BACKOFF_SECONDS = 2
RETRY_BACKOFF_MAX_SECONDS = 60


@app.task(name=PING)
def ping(value: str = "pong") -> str:
    """Echo a value back: proves the whole path web -> broker -> worker -> result backend."""
    return value


@app.task(
    name=RUN_TRAINING_JOB,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=training.TRANSIENT_ERRORS,
    retry_backoff=RETRY_BACKOFF_SECONDS,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=None,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
)
def run_training_job(job_id: int) -> str:
    """Fine-tune one editor's model. Safe to deliver twice: the job row's lease decides who runs it."""
    return training.run_job(job_id)


@app.task(name=SWEEP_STALE_JOBS, acks_late=True)
def sweep_stale_jobs() -> dict:
    return training.sweep_stale_jobs()


@app.task(name=CLEAN_ORPHAN_FILES, acks_late=True)
def clean_orphan_files() -> dict:
    return training.clean_orphan_files()
