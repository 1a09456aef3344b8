"""Training jobs: the one home of their state machine, and of sending their Celery messages.

Every change to a job's status, attempts, lease and progress is made by a function here, whoever asks: the
API, the worker running the job and the sweeper. workers/training.py only orchestrates: it takes the
lease, loads the pairs, runs rlcore and writes the model file, calling these for every row change.

    create_job         -> queued (its message sent once committed)
    cancel_job         queued -> cancelled; running: sets the flag the worker polls
    take_lease         queued -> running, one more attempt; or -> cancelled / failed (flag, out of attempts)
    report             running: progress and heartbeat, under the lease; reads the cancel flag
    succeed            running -> succeeded: the model row and, if it validates better, the active model
    fail               running -> failed
    stop_cancelled     running -> cancelled (the worker saw the flag)
    hand_back          running -> queued after a database or broker error; -> failed on the last attempt
    sweep_stale_jobs   running, heartbeat stopped -> queued; -> failed when out of attempts

The row, not the broker, is the source of truth: Celery with Redis may deliver a message twice (after the
visibility timeout, celery#5935) or late (a SIGKILLed worker's unacked task, celery#4984/#6229), so a job
runs only under a lease held in its row (`lease_owner` + `heartbeat_at`), and every worker-side write
checks that the lease is still its own.

One retry limit: the job's `attempts`, counted when a lease is taken, against JOB_MAX_ATTEMPTS
(`out_of_attempts`). Celery only decides when a retry is delivered (workers/tasks.py); a job whose
worker died is re-queued by the sweeper, and each new lease is one more attempt either way.

Messages are sent by task name through the Celery app module (workers.celery), never by importing the
task: personalize must not depend on worker code (the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from kombu.exceptions import OperationalError

from personalize.models import JobEvent, Pair, PersonalModel, TrainingJob
from personalize.models_ops import activate_model
from workers.celery import RUN_TRAINING_JOB, app

log = logging.getLogger(__name__)

Status = TrainingJob.Status

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


class LeaseLost(Exception):
    """Another worker took over this job (our heartbeat had expired): stop without touching the job."""


class CancelRequested(Exception):
    """The editor cancelled the job before its model could be published."""


def record_event(job: TrainingJob, kind: str, message: str = "", **data) -> JobEvent:
    return JobEvent.objects.create(job=job, kind=kind, message=message, data=data)


def training_pairs(owner, tag: str = ""):
    pairs = Pair.objects.filter(owner=owner)
    return pairs.filter(tags__name=tag) if tag else pairs


def out_of_attempts(job: TrainingJob) -> bool:
    """The one retry limit: every lease taken is an attempt, whether Celery retried or the sweeper re-queued
    (for a training job and, with the same fields, a pair import: personalize/imports.py)."""
    return job.attempts >= settings.JOB_MAX_ATTEMPTS


def lease_is_live(job: TrainingJob, now) -> bool:
    """A running row (a job or a pair import) whose holder wrote its heartbeat within JOB_LEASE_SECONDS."""
    return bool(
        job.status == Status.RUNNING
        and job.heartbeat_at
        and now - job.heartbeat_at < timedelta(seconds=settings.JOB_LEASE_SECONDS)
    )


# --- sending messages --------------------------------------------------------------------------------------


def enqueue(job: TrainingJob) -> None:
    """Send the job's message once the surrounding transaction commits (never for a rolled-back row).

    Its time limits follow its budget and its pairs: past `seconds + JOB_TIME_LIMIT_MARGIN +
    JOB_SECONDS_PER_PAIR * pairs` the worker raises SoftTimeLimitExceeded inside the job, which then fails
    with a clear message; 60 s later the hard limit kills the pool process and the sweeper takes over.
    """
    TrainingJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    pairs = training_pairs(job.owner, job.tag).count()
    soft_limit = (
        job.seconds + settings.JOB_TIME_LIMIT_MARGIN + math.ceil(settings.JOB_SECONDS_PER_PAIR * pairs)
    )
    transaction.on_commit(partial(send, job.pk, soft_limit))


def send(job_id: int, soft_limit: int) -> None:
    """Send the job's message within about a second, or leave it to the sweeper (the request goes on)."""
    sent = send_task(RUN_TRAINING_JOB, job_id, soft_time_limit=soft_limit, time_limit=soft_limit + 60)
    if not sent:
        # Due at the sweeper's next pass, not QUEUED_RESEND_SECONDS from now.
        overdue = timezone.now() - timedelta(seconds=settings.QUEUED_RESEND_SECONDS)
        TrainingJob.objects.filter(pk=job_id, status=Status.QUEUED).update(enqueued_at=overdue)


def send_task(name: str, row_id: int, **options) -> bool:
    """Send a task's message by name, failing fast: False when the broker did not take it, and the row's
    sweeper sends it later (training jobs here, pair imports in personalize.imports).

    Without a result (ignore_result): the row is its record, and asking for one made Celery subscribe to
    the Redis result backend first, retrying 20 times over 20 s while Redis was down.
    """
    try:
        with app.connection_for_write(
            connect_timeout=PUBLISH_CONNECT_TIMEOUT, transport_options=PUBLISH_TRANSPORT_OPTIONS
        ) as connection:
            app.send_task(
                name, args=(row_id,), connection=connection, retry=False, ignore_result=True, **options
            )
    except OperationalError as exc:
        log.warning(
            "%s(%s): the broker did not take the message (%s); the sweeper will send it", name, row_id, exc
        )
        return False
    return True


# --- the API's transitions ---------------------------------------------------------------------------------


def create_job(
    owner, seconds: int | None = None, face_weight: float = 0.0, seed: int = 0, tag: str = ""
) -> TrainingJob:
    """-> queued, and its message sent once committed."""
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
        if job.status == Status.QUEUED:
            job.cancel_requested = True
            _finish(job, Status.CANCELLED, "cancelled before it started")
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
    if job.status not in (Status.FAILED, Status.CANCELLED):
        raise JobFinished(f"job {job.pk} is {job.status}; only failed or cancelled jobs can be retried")
    return create_job(job.owner, job.seconds, job.face_weight, job.seed, job.tag)


# --- the worker's transitions (each checks that the lease is still the caller's) ---------------------------


def _finish(job: TrainingJob, status: str, message: str, **fields) -> None:
    """Mark a job finished and record why (the caller holds the row lock)."""
    job.status = status
    job.finished_at = timezone.now()
    job.lease_owner = ""
    for name, value in fields.items():
        setattr(job, name, value)
    job.save()
    kind = {Status.SUCCEEDED: JobEvent.Kind.SUCCEEDED, Status.FAILED: JobEvent.Kind.FAILED}.get(
        status, JobEvent.Kind.CANCELLED
    )
    record_event(job, kind, message)


def _locked_lease(job_id: int, owner: str) -> TrainingJob | None:
    """The job's row, locked, when `owner` still holds its lease; None when it does not (inside atomic)."""
    job = TrainingJob.objects.select_for_update().get(pk=job_id)
    return job if job.lease_owner == owner and job.status == Status.RUNNING else None


def take_lease(job_id: int, owner: str) -> TrainingJob | None:
    """queued -> running, one more attempt; or None when this delivery has nothing to do.

    A delivery that finds the job finished, or a live lease held by someone else, does nothing; one that
    finds the cancel flag or no attempts left finishes the job instead.
    """
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in TrainingJob.FINISHED:
            return None
        now = timezone.now()
        if lease_is_live(job, now):
            log.info("job %s: lease held by %s, skipping this delivery", job_id, job.lease_owner)
            return None
        if job.cancel_requested:
            _finish(job, Status.CANCELLED, "cancelled before training started")
            return None
        if out_of_attempts(job):
            message = f"gave up after {job.attempts} attempts"
            _finish(job, Status.FAILED, message, error=message)
            return None
        resumed = job.attempts > 0
        job.status = Status.RUNNING
        job.attempts += 1
        job.lease_owner = owner
        job.heartbeat_at = now
        job.started_at = job.started_at or now
        job.save()
        if resumed:
            record_event(
                job,
                JobEvent.Kind.RETRIED,
                f"attempt {job.attempts}, resuming from the last checkpoint",
                attempt=job.attempts,
                step=job.step,
            )
        else:
            record_event(job, JobEvent.Kind.STARTED, f"started on {owner}", worker=owner)
        return job


def report(job_id: int, owner: str, **progress) -> bool:
    """Heartbeat and progress of a running job, written only under `owner`'s lease; returns the cancel flag.

    Raises LeaseLost when the lease is no longer ours (the sweeper gave the job to another worker).
    """
    updated = TrainingJob.objects.filter(pk=job_id, lease_owner=owner, status=Status.RUNNING).update(
        heartbeat_at=timezone.now(), **progress
    )
    if not updated:
        raise LeaseLost(f"job {job_id}: the lease is no longer ours")
    return bool(TrainingJob.objects.filter(pk=job_id).values_list("cancel_requested", flat=True).first())


def succeed(
    job_id: int,
    owner: str,
    *,
    file: str,
    size_bytes: int,
    sha256: str,
    base_version: str,
    metrics: dict,
    curve: list,
    training_seconds: float | None = None,
    active: dict | None = None,
) -> PersonalModel:
    """running -> succeeded: the model row, the editor's active model and the job, in one transaction.

    The model file is already in place (the caller removes it if this raises). The new model becomes the
    editor's active one unless `active` validates better: the active model and the new one scored on the
    same validation pairs of this job (workers.training.compare_with_active: "val_delta_e" and
    "new_val_delta_e" on "pairs" pairs). A short or unlucky run must not silently replace a good model.
    """
    with transaction.atomic():
        job = _locked_lease(job_id, owner)
        if job is None:
            raise LeaseLost(f"job {job_id}: the lease was lost before publishing")
        if job.cancel_requested:
            raise CancelRequested()
        version = (PersonalModel.objects.filter(owner=job.owner).aggregate(v=Max("version"))["v"] or 0) + 1
        new_score = metrics["val_delta_e_personal"] if active is None else active["new_val_delta_e"]
        activate = active is None or new_score < active["val_delta_e"]
        metrics = {
            **metrics,
            "activated": activate,
            "val_delta_e_active": None if active is None else active["val_delta_e"],
            "active_version": None if active is None else active["version"],
            # the comparison: both models on the same pairs (the active model's training pairs left out)
            "val_delta_e_compared": None if active is None else active["new_val_delta_e"],
            "compared_pairs": None if active is None else active["pairs"],
        }
        model = PersonalModel.objects.create(
            owner=job.owner,
            version=version,
            file=file,
            size_bytes=size_bytes,
            sha256=sha256,
            base_version=base_version,
            metrics=metrics,
            job=job,
        )
        if activate:
            activate_model(job.owner, model)
            message = f"published model version {version} and made it active"
        else:
            message = (
                f"published model version {version}, not active: it validates at {new_score:.2f} dE00 "
                f"on {active['pairs']} of this job's validation pairs, the active version "
                f"{active['version']} at {active['val_delta_e']:.2f}; activate it to use it anyway"
            )
        _finish(
            job,
            Status.SUCCEEDED,
            message,
            model=model,
            metrics=metrics,
            curve=curve,
            progress=1.0,
            eta_seconds=0.0,
            val_delta_e=metrics.get("val_delta_e_personal"),
            training_seconds=training_seconds,
        )
    return model


def fail(job_id: int, owner: str, message: str) -> bool:
    """running -> failed, with the reason the editor sees; False when the lease was no longer ours."""
    with transaction.atomic():
        job = _locked_lease(job_id, owner)
        if job is None:
            return False
        _finish(job, Status.FAILED, message, error=message)
        return True


def stop_cancelled(job_id: int, owner: str) -> None:
    """running -> cancelled: the worker saw the cancel flag and published nothing."""
    with transaction.atomic():
        job = _locked_lease(job_id, owner)
        if job is not None:
            _finish(job, Status.CANCELLED, "cancelled while running; nothing was published")


def hand_back(job_id: int, owner: str, reason: str) -> str:
    """After a database or broker error: running -> queued for Celery's retry, or -> failed on the last attempt.

    Returns the job's new status, or "" when the lease was no longer ours (then nothing changes and no
    retry is due). Handing back at once, instead of letting the lease expire, lets the retry start as soon
    as Celery's backoff allows.
    """
    with transaction.atomic():
        job = _locked_lease(job_id, owner)
        if job is None:
            return ""
        if out_of_attempts(job):
            message = f"gave up after {job.attempts} attempts; the last one failed with {reason}"
            _finish(job, Status.FAILED, message, error=message)
            return Status.FAILED
        job.status = Status.QUEUED
        job.lease_owner = ""
        job.heartbeat_at = None
        # Celery's retry is the job's message now: the sweeper must not count it as lost and send another.
        job.enqueued_at = timezone.now()
        job.save(update_fields=["status", "lease_owner", "heartbeat_at", "enqueued_at"])
        record_event(
            job,
            JobEvent.Kind.REQUEUED,
            f"attempt {job.attempts} of {settings.JOB_MAX_ATTEMPTS} failed with {reason}; retrying",
            attempts=job.attempts,
        )
        return Status.QUEUED


# --- the sweeper ------------------------------------------------------------------------------------------


def sweep_stale_jobs() -> dict:
    """Re-queue running jobs whose heartbeat stopped (dead worker); fail those out of attempts.

    Also re-sends queued jobs that nobody started for a long time (a message lost with a broker that
    kept nothing on disk): a duplicate message is harmless, the lease decides. Returns job ids.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    requeued, failed, resent = [], [], []
    with transaction.atomic():
        for job in TrainingJob.objects.select_for_update(skip_locked=True).filter(
            status=Status.RUNNING, heartbeat_at__lt=stale_before
        ):
            if out_of_attempts(job):
                message = f"the worker stopped responding and the job ran out of attempts ({job.attempts})"
                _finish(job, Status.FAILED, message, error=message)
                failed.append(job.pk)
                continue
            job.status = Status.QUEUED
            job.lease_owner = ""
            job.save(update_fields=["status", "lease_owner"])
            record_event(
                job,
                JobEvent.Kind.REQUEUED,
                f"heartbeat stopped {(now - job.heartbeat_at).seconds} s ago; re-queued",
                attempts=job.attempts,
            )
            enqueue(job)
            requeued.append(job.pk)
        lost_before = now - timedelta(seconds=settings.QUEUED_RESEND_SECONDS)
        for job in TrainingJob.objects.select_for_update(skip_locked=True).filter(
            status=Status.QUEUED, enqueued_at__lt=lost_before
        ):
            enqueue(job)
            resent.append(job.pk)
    return {"requeued": requeued, "failed": failed, "resent": resent}
