"""Celery tasks: small, idempotent, taking ids. The work is in training.py and imports.py, the rows' states in
personalize.jobs and personalize.imports.

Names come from the Celery app module (workers.celery), which is what the web side sends by.
"""

from django.conf import settings

from rlcore.malloc import keep_freed_memory
from workers import imports, training
from workers.celery import (
    CLEAN_ORPHAN_FILES,
    PING,
    RUN_PAIR_IMPORT,
    RUN_TRAINING_JOB,
    SWEEP_STALE_IMPORTS,
    SWEEP_STALE_JOBS,
    app,
)

keep_freed_memory()  # searches and training reuse their buffers instead of faulting them in (rlcore/malloc.py)

# The budget is enforced inside rlcore; time limits catch a job that hangs past it. Each job is sent with
# limits from its own budget (personalize.jobs.enqueue); these are the ceiling for any message without.
SOFT_LIMIT = settings.TRAINING_MAX_SECONDS + settings.JOB_TIME_LIMIT_MARGIN
HARD_LIMIT = SOFT_LIMIT + 60

# Retries of a job (or a pair import) after a database or broker error. Celery decides when: exponential backoff from 2 s
# (2, 4, 8, ... capped at 60 s), with full jitter so that the jobs one outage interrupted do not all
# come back at the same instant. The job's row decides how many: each delivery takes a lease, which is
# one attempt, and the attempt that reaches JOB_MAX_ATTEMPTS fails the job instead of raising
# (personalize.jobs.hand_back), which ends the retries. Celery's own count is unlimited (max_retries=None)
# so that it can never disagree with the job's; a failure before the lease is taken (the database down)
# uses no attempt and is retried until the database is back.
RETRY_BACKOFF_SECONDS = 2
RETRY_BACKOFF_MAX_SECONDS = 60
# The one retry policy, for every task whose row holds a lease and counts its attempts.
RETRY_POLICY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": training.TRANSIENT_ERRORS,
    "retry_backoff": RETRY_BACKOFF_SECONDS,
    "retry_backoff_max": RETRY_BACKOFF_MAX_SECONDS,
    "retry_jitter": True,
    "max_retries": None,
}


@app.task(name=PING)
def ping(value: str = "pong") -> str:
    """Echo a value back: proves the whole path web -> broker -> worker -> result backend."""
    return value


@app.task(name=RUN_TRAINING_JOB, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT, **RETRY_POLICY)
def run_training_job(job_id: int) -> str:
    """Fine-tune one editor's model. Safe to deliver twice: the job row's lease decides who runs it."""
    return training.run_job(job_id)


@app.task(name=SWEEP_STALE_JOBS, acks_late=True)
def sweep_stale_jobs() -> dict:
    return training.sweep_stale_jobs()


@app.task(name=CLEAN_ORPHAN_FILES, acks_late=True)
def clean_orphan_files() -> dict:
    """Model files and checkpoints (training), zips and pair files (imports) that no row names."""
    return {"removed": training.clean_orphan_files()["removed"] + imports.clean_orphan_files()["removed"]}


@app.task(name=RUN_PAIR_IMPORT, **RETRY_POLICY)
def run_pair_import(import_id: int) -> str:
    """Import a bulk zip's pairs, resuming at the row's cursor. Safe to deliver twice: the lease decides."""
    return imports.run_import(import_id)


@app.task(name=SWEEP_STALE_IMPORTS, acks_late=True)
def sweep_stale_imports() -> dict:
    return imports.sweep_stale_imports()
