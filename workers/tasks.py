"""Celery tasks: small, idempotent, taking ids, with explicit retry policies. The work is in training.py."""

from django.conf import settings

from workers import training
from workers.celery import app

# The budget is enforced inside rlcore; time limits catch a job that hangs past it. Each job is sent with
# limits from its own budget (personalize.jobs.enqueue); these are the ceiling for any message without.
SOFT_LIMIT = settings.TRAINING_MAX_SECONDS + settings.JOB_TIME_LIMIT_MARGIN
HARD_LIMIT = SOFT_LIMIT + 60


@app.task(name="workers.tasks.ping")
def ping(value: str = "pong") -> str:
    """Echo a value back: proves the whole path web -> broker -> worker -> result backend."""
    return value


@app.task(
    bind=True,
    name="workers.tasks.run_training_job",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
)
def run_training_job(self, job_id: int) -> str:
    """Fine-tune one editor's model. Safe to deliver twice: the job row's lease decides who runs it."""
    try:
        return training.run_job(job_id)
    except training.TRANSIENT_ERRORS as exc:
        # A database or broker blip (run_job has handed the job back): try again with exponential backoff.
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@app.task(name="workers.tasks.sweep_stale_jobs", acks_late=True)
def sweep_stale_jobs() -> dict:
    return training.sweep_stale_jobs()


@app.task(name="workers.tasks.clean_orphan_files", acks_late=True)
def clean_orphan_files() -> dict:
    return training.clean_orphan_files()
