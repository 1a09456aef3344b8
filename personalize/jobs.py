"""Training jobs as the API sees them: create (enqueue after commit), cancel, and record events.

The Celery side (workers/training.py) runs a job under a lease held in its row; everything here only
changes rows, and enqueues through the workers' Celery app once the transaction has committed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from personalize.models import JobEvent, Pair, TrainingJob

log = logging.getLogger(__name__)

# Publishing fails fast instead of retrying: with Redis down, kombu's connection retries held a request
# ~6 s. A message not sent is not lost, since the job's row is committed and the sweeper re-sends it.
PUBLISH_CONNECT_TIMEOUT = 1.0
PUBLISH_TRANSPORT_OPTIONS = {"max_retries": 0, "socket_connect_timeout": 1, "socket_timeout": 2}


class NotEnoughPairs(Exception):
    def __init__(self, required: int, available: int, tag: str = ""):
        where = f" tagged '{tag}'" if tag else ""
        super().__init__(
            f"training needs at least {required} pairs{where}; you have {available}. Upload {required - available} more."
        )
        self.required = required
        self.available = available


class ActiveJobExists(Exception):
    def __init__(self, job_id: int):
        super().__init__(
            f"you already have an active training job ({job_id}); cancel it or wait for it to finish"
        )
        self.job_id = job_id


class JobFinished(Exception):
    pass


def record_event(job: TrainingJob, kind: str, message: str = "", **data) -> JobEvent:
    return JobEvent.objects.create(job=job, kind=kind, message=message, data=data)


def training_pairs(owner, tag: str = ""):
    pairs = Pair.objects.filter(owner=owner)
    return pairs.filter(tags__name=tag) if tag else pairs


def enqueue(job: TrainingJob) -> None:
    """Send the job's message once the surrounding transaction commits (never for a rolled-back row).

    Its time limits follow its budget: past `seconds + JOB_TIME_LIMIT_MARGIN` the worker raises
    SoftTimeLimitExceeded inside the job, which then fails with a clear message; 60 s later the hard limit
    kills the pool process and the sweeper takes over.
    """
    TrainingJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    transaction.on_commit(partial(publish, job.pk, job.seconds + settings.JOB_TIME_LIMIT_MARGIN))


def publish(job_id: int, soft_limit: int) -> None:
    """Send the job's message within about a second, or leave it to the sweeper (the request goes on).

    Without a result (ignore_result): the job's row is its record, and asking for one made Celery
    subscribe to the Redis result backend first, retrying 20 times over 20 s while Redis was down.
    """
    from workers.celery import app
    from workers.tasks import run_training_job

    try:
        with app.connection_for_write(
            connect_timeout=PUBLISH_CONNECT_TIMEOUT, transport_options=PUBLISH_TRANSPORT_OPTIONS
        ) as connection:
            run_training_job.apply_async(
                (job_id,),
                connection=connection,
                retry=False,
                ignore_result=True,
                soft_time_limit=soft_limit,
                time_limit=soft_limit + 60,
            )
    except OperationalError as exc:
        log.warning("job %s: the broker did not take its message (%s); the sweeper will send it", job_id, exc)
        # Due at the sweeper's next pass, not QUEUED_RESEND_SECONDS from now.
        overdue = timezone.now() - timedelta(seconds=settings.QUEUED_RESEND_SECONDS)
        TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(enqueued_at=overdue)


def create_job(
    owner, seconds: int | None = None, face_weight: float = 0.0, seed: int = 0, tag: str = ""
) -> TrainingJob:
    available = training_pairs(owner, tag).count()
    if available < settings.MIN_PAIRS_FOR_TRAINING:
        raise NotEnoughPairs(settings.MIN_PAIRS_FOR_TRAINING, available, tag)
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                owner=owner,
                seconds=settings.TRAINING_DEFAULT_SECONDS if seconds is None else seconds,
                face_weight=face_weight,
                seed=seed,
                tag=tag,
            )
            record_event(job, JobEvent.Kind.QUEUED, f"queued with {available} pairs", pairs=available)
            enqueue(job)
    except IntegrityError:
        # The partial unique index "one active job per editor" decided a race between two requests.
        active = TrainingJob.objects.filter(owner=owner, status__in=TrainingJob.ACTIVE).first()
        if active is None:
            raise
        raise ActiveJobExists(active.pk) from None
    return job


def active_job(owner) -> TrainingJob | None:
    return TrainingJob.objects.filter(owner=owner, status__in=TrainingJob.ACTIVE).first()


def cancel_job(job_id: int) -> TrainingJob:
    """A queued job is cancelled at once; a running one is flagged and its worker stops within seconds."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.status in TrainingJob.FINISHED:
            raise JobFinished(f"job {job.pk} has already finished ({job.status})")
        if job.status == TrainingJob.Status.QUEUED:
            job.status = TrainingJob.Status.CANCELLED
            job.finished_at = timezone.now()
            job.cancel_requested = True
            job.save(update_fields=["status", "finished_at", "cancel_requested"])
            record_event(job, JobEvent.Kind.CANCELLED, "cancelled before it started")
        elif not job.cancel_requested:
            job.cancel_requested = True
            job.save(update_fields=["cancel_requested"])
            record_event(
                job, JobEvent.Kind.CANCEL_REQUESTED, "cancellation requested; the worker stops shortly"
            )
    return job


def retry_job(job_id: int) -> TrainingJob:
    """Admin action: a new job with the same settings as a failed or cancelled one."""
    job = TrainingJob.objects.get(pk=job_id)
    if job.status not in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
        raise JobFinished(f"job {job.pk} is {job.status}; only failed or cancelled jobs can be retried")
    return create_job(job.owner, job.seconds, job.face_weight, job.seed, job.tag)
