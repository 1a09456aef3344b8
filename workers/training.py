"""Running one training job: lease, load thumbnails, fine-tune with rlcore, publish atomically.

The job row is the source of truth, not the broker. Celery with Redis may deliver a message twice (after
the visibility timeout, celery#5935) or late (a SIGKILLed worker's unacked task, celery#4984/#6229), so:

* a job runs only under a lease held in its row (`lease_owner` + `heartbeat_at`, taken with
  select_for_update). A delivery that finds a live lease held by someone else does nothing; one that finds
  the job finished or cancelled does nothing;
* the heartbeat is refreshed from inside the training loop, so a dead worker's lease expires and the
  sweeper (sweep_stale_jobs) re-queues the job, which resumes from its last checkpoint;
* a model is published by writing its file under a temporary name, renaming it into place, then creating
  the model row, moving the editor's active pointer and finishing the job in one transaction. If that
  transaction fails the file is removed; a crash between rename and commit leaves a file no row names,
  which clean_orphan_files removes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Max
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from personalize import inference
from personalize.inference import base_model_path
from personalize.jobs import enqueue, record_event, training_pairs
from personalize.models import EditorProfile, JobEvent, PersonalModel, TrainingJob
from personalize.pairs import pair_thumbnails
from rlcore.agent import Cancelled, finetune, validation_delta_e
from rlcore.checkpoint import ModelFormatError, load_model, save_model
from rlcore.data import PairSet

log = logging.getLogger(__name__)

# Database or broker blips: the task retries with backoff. Everything else is a bug or bad data.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError)

Status = TrainingJob.Status
MILESTONES = (0.25, 0.5, 0.75)
_base_model = None


class LeaseLost(Exception):
    """Another worker took over this job (our heartbeat had expired): stop without touching the job."""


class BadData(Exception):
    """The job cannot succeed with its data: fail at once, do not retry."""


def media_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / name


def base_model():
    global _base_model
    if _base_model is None:
        _base_model = load_model(base_model_path())
    return _base_model


def new_lease_owner() -> str:
    """Unique per execution: a duplicate delivery of the same message must not share the lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_is_live(job: TrainingJob, now) -> bool:
    return bool(
        job.status == Status.RUNNING
        and job.heartbeat_at
        and now - job.heartbeat_at < timedelta(seconds=settings.JOB_LEASE_SECONDS)
    )


def finish(job: TrainingJob, status: str, message: str, **fields) -> None:
    """Mark a job finished and record why (the caller holds the row lock or the lease)."""
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


def acquire_lease(job_id: int, owner: str) -> TrainingJob | None:
    """Take the job for this execution, or return None when there is nothing for it to do."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in TrainingJob.FINISHED:
            return None
        now = timezone.now()
        if lease_is_live(job, now):
            log.info("job %s: lease held by %s, skipping this delivery", job_id, job.lease_owner)
            return None
        if job.cancel_requested:
            finish(job, Status.CANCELLED, "cancelled before training started")
            return None
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            finish(job, Status.FAILED, "", error=f"gave up after {job.attempts} attempts")
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


def load_pair_set(job: TrainingJob) -> PairSet:
    pairs = list(training_pairs(job.owner, job.tag).order_by("id"))
    if len(pairs) < 2:
        raise BadData(f"only {len(pairs)} pairs available; training needs at least 2")
    befores, afters, weights = [], [], []
    for pair in pairs:
        try:
            before, after, mask = pair_thumbnails(pair)
        except (OSError, ValueError) as exc:
            raise BadData(f"pair {pair.pk}: its stored thumbnails cannot be read ({exc})") from exc
        befores.append(before)
        afters.append(after)
        weights.append(
            1.0 + job.face_weight * mask if mask is not None else np.ones(before.shape[:2], np.float32)
        )
    return PairSet(
        before=np.stack(befores),
        after=np.stack(afters),
        weights=np.stack(weights).astype(np.float32) if job.face_weight > 0 else None,
        names=[pair.name or str(pair.pk) for pair in pairs],
    )


class JobReporter:
    """The training loop's view of the job row: progress, heartbeat and the cancel flag, at most once a second."""

    def __init__(self, job: TrainingJob, owner: str):
        self.job = job
        self.owner = owner
        self.last_write = 0.0
        self.last_checkpoint_event = time.monotonic()
        self.cancel = False
        self.pending = None  # the latest progress report not written yet (at most one write a second)
        self.milestones = [m for m in MILESTONES if m > job.progress]
        self.curve = list(job.curve)

    def _write(self, **fields) -> None:
        fields["heartbeat_at"] = timezone.now()
        updated = TrainingJob.objects.filter(
            pk=self.job.pk, lease_owner=self.owner, status=Status.RUNNING
        ).update(**fields)
        if not updated:
            raise LeaseLost(f"job {self.job.pk}: the lease is no longer ours")
        self.cancel = (
            TrainingJob.objects.filter(pk=self.job.pk).values_list("cancel_requested", flat=True).first()
        )

    def heartbeat(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_write >= settings.JOB_HEARTBEAT_SECONDS:
            self._write()
            self.last_write = time.monotonic()

    def on_progress(self, progress) -> None:
        if time.monotonic() - self.last_write < settings.JOB_HEARTBEAT_SECONDS:
            self.pending = progress  # written at the next chance (should_stop), not dropped
            return
        self.pending = None
        val = None if math.isnan(progress.val_delta_e) else round(float(progress.val_delta_e), 4)
        if val is not None and (not self.curve or self.curve[-1][0] != progress.step):
            self.curve.append([int(progress.step), val])
        self._write(
            progress=round(min(max(progress.fraction, 0.0), 1.0), 4),
            step=int(progress.step),
            eta_seconds=round(max(progress.eta_seconds, 0.0), 1),
            val_delta_e=val,
            curve=self.curve,
        )
        self.last_write = time.monotonic()
        while self.milestones and progress.fraction >= self.milestones[0]:
            milestone = self.milestones.pop(0)
            record_event(
                self.job, JobEvent.Kind.PROGRESS, f"{milestone:.0%} done", step=progress.step, val_delta_e=val
            )
        if time.monotonic() - self.last_checkpoint_event >= 30:
            record_event(self.job, JobEvent.Kind.CHECKPOINT, "checkpoint written", step=progress.step)
            self.last_checkpoint_event = time.monotonic()

    def should_stop(self) -> bool:
        if self.pending is not None and time.monotonic() - self.last_write >= settings.JOB_HEARTBEAT_SECONDS:
            self.on_progress(self.pending)
        self.heartbeat()
        return bool(self.cancel)


def compare_with_active(job: TrainingJob, pair_set: PairSet, result) -> dict | None:
    """The editor's active personal model, scored on the new job's validation pairs (None: there is none).

    A new model replaces the active one only when it validates better on the same pairs: a short or
    unlucky run must not silently replace a good model.
    """
    row = PersonalModel.objects.filter(
        pk=EditorProfile.objects.filter(user=job.owner).values("active_model")[:1]
    ).first()
    if row is None:
        return None
    try:
        served = inference.personal_model(row)
    except (OSError, ModelFormatError) as exc:  # unreadable or for another editor version: replace it
        log.warning("job %s: active model %s cannot be compared (%s)", job.pk, row.pk, exc)
        return None
    score = validation_delta_e(served.model, pair_set, result.val_idx)
    return {"id": row.pk, "version": row.version, "val_delta_e": round(score, 4)}


def publish(job: TrainingJob, owner: str, result, active: dict | None = None) -> PersonalModel:
    """Write the model file (temporary name, then rename), then one transaction for every row change.

    The new model becomes the editor's active one unless `active` (compare_with_active) validates better.
    """
    name = f"models/{job.owner_id}/job-{job.pk}-{uuid.uuid4().hex[:12]}.pt"
    final = media_path(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(final.name + ".tmp")
    save_model(result.model, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    data = temporary.read_bytes()
    os.replace(temporary, final)
    try:
        with transaction.atomic():
            locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
            if locked.lease_owner != owner or locked.status != Status.RUNNING:
                raise LeaseLost(f"job {job.pk}: the lease was lost before publishing")
            if locked.cancel_requested:
                raise Cancelled()
            version = (
                PersonalModel.objects.filter(owner=job.owner).aggregate(v=Max("version"))["v"] or 0
            ) + 1
            new_score = result.metrics["val_delta_e_personal"]
            activate = active is None or new_score < active["val_delta_e"]
            metrics = {
                **result.metrics,
                "activated": activate,
                "val_delta_e_active": None if active is None else active["val_delta_e"],
                "active_version": None if active is None else active["version"],
            }
            model = PersonalModel.objects.create(
                owner=job.owner,
                version=version,
                file=name,
                size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                base_version=str(result.model.metadata.get("base_version", "")),
                metrics=metrics,
                job=locked,
            )
            if activate:
                EditorProfile.objects.update_or_create(user=job.owner, defaults={"active_model": model})
                message = f"published model version {version} and made it active"
            else:
                message = (
                    f"published model version {version}, not active: it validates at {new_score:.2f} dE00 "
                    f"on this job's validation pairs, the active version {active['version']} at "
                    f"{active['val_delta_e']:.2f}; activate it to use it anyway"
                )
            locked.model = model
            locked.metrics = metrics
            locked.curve = [[int(s), round(float(v), 4)] for s, v in result.curve]
            locked.progress = 1.0
            locked.eta_seconds = 0.0
            locked.val_delta_e = result.metrics.get("val_delta_e_personal")
            finish(locked, Status.SUCCEEDED, message, model=model)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return model


def remove_checkpoint(job: TrainingJob) -> None:
    path = media_path(job.checkpoint_name)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)


def run_job(job_id: int) -> str:
    """Run (or resume) one job to the end. Returns what happened, for the task's result and the logs."""
    owner = new_lease_owner()
    job = acquire_lease(job_id, owner)
    if job is None:
        return "skipped"
    reporter = JobReporter(job, owner)
    try:
        pair_set = load_pair_set(job)
        reporter.heartbeat(force=True)
        checkpoint = media_path(job.checkpoint_name)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = finetune(
            pair_set,
            base=base_model(),
            seconds=job.seconds,
            seed=job.seed,
            face_weight=job.face_weight,
            checkpoint_path=checkpoint,
            should_stop=reporter.should_stop,
            on_progress=reporter.on_progress,
        )
        TrainingJob.objects.filter(pk=job.pk).update(training_seconds=time.monotonic() - started)
        publish(job, owner, result, compare_with_active(job, pair_set, result))
    except Cancelled:
        with transaction.atomic():
            locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
            if locked.lease_owner == owner:
                finish(locked, Status.CANCELLED, "cancelled while running; nothing was published")
        remove_checkpoint(job)
        return "cancelled"
    except LeaseLost:
        log.warning("job %s: lease lost, leaving the job to its new owner", job_id)
        return "lease lost"
    except BadData as exc:
        fail(job, owner, str(exc))
        return "failed"
    except SoftTimeLimitExceeded:
        fail(job, owner, f"the job ran past its time limit ({job.seconds} s of training asked)")
        return "failed"
    except TRANSIENT_ERRORS:
        release_lease(job.pk, owner)
        raise
    except Exception as exc:
        # A bug or a broken deployment (say, an unreadable base model): retrying cannot help, and the
        # editor should see why at once rather than a job stuck in "running".
        fail(job, owner, f"internal error: {type(exc).__name__}: {exc}")
        raise
    remove_checkpoint(job)
    return "succeeded"


def fail(job: TrainingJob, owner: str, message: str) -> None:
    with transaction.atomic():
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if locked.lease_owner == owner and locked.status == Status.RUNNING:
            finish(locked, Status.FAILED, message, error=message)
    remove_checkpoint(job)


def release_lease(job_id: int, owner: str) -> None:
    """Hand a running job back (before a retry) instead of waiting for its lease to expire. Best effort:
    with the database down this fails too, and the sweeper re-queues the job once the lease expires."""
    try:
        TrainingJob.objects.filter(pk=job_id, status=Status.RUNNING, lease_owner=owner).update(
            status=Status.QUEUED, lease_owner="", heartbeat_at=None
        )
    except TRANSIENT_ERRORS:
        log.warning("job %s: could not release the lease; the sweeper will re-queue it", job_id)


def sweep_stale_jobs() -> dict:
    """Re-queue running jobs whose heartbeat stopped (dead worker); fail those out of attempts.

    Also re-sends queued jobs that nobody started for a long time (a message lost with a broker that
    kept nothing on disk): a duplicate message is harmless, the lease decides.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    requeued, failed, resent = [], [], []
    with transaction.atomic():
        for job in TrainingJob.objects.select_for_update(skip_locked=True).filter(
            status=Status.RUNNING, heartbeat_at__lt=stale_before
        ):
            if job.attempts >= settings.JOB_MAX_ATTEMPTS:
                message = f"the worker stopped responding and the job ran out of attempts ({job.attempts})"
                finish(job, Status.FAILED, message, error=message)
                remove_checkpoint(job)
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


def clean_orphan_files(min_age_seconds: float = 3600) -> dict:
    """Remove model files no row names and checkpoints of finished jobs, once they are old enough."""
    root = Path(settings.MEDIA_ROOT)
    cutoff = time.time() - min_age_seconds
    known_models = set(PersonalModel.objects.values_list("file", flat=True))
    active_jobs = set(TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE).values_list("pk", flat=True))
    removed = []
    for path in root.glob("models/*/*"):
        name = path.relative_to(root).as_posix()
        if name not in known_models and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(name)
    for path in root.glob("checkpoints/*/job-*.ckpt*"):
        job_id = int(path.name.split("-")[1].split(".")[0])
        if job_id not in active_jobs and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path.relative_to(root).as_posix())
    return {"removed": removed}
