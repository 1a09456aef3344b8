"""Running one training job: take the lease, load the pairs, run rlcore, write the model file, publish.

This module only orchestrates. Every change to the job's row (lease, progress, success, failure, hand-back
for a retry) is a transition in personalize/jobs.py, which also explains why the row's lease, not the
broker, decides who runs a job. What is done here: the pairs' thumbnails into a PairSet, rlcore's
fine-tuning with a checkpoint on the worker's own disk, the comparison with the editor's active model, and
the model file, saved whole to media storage (Django's storage API: a shared directory or an S3 bucket)
before personalize.jobs.succeed records it in one transaction. No row names a file before it is complete,
so readers never see a partial one. If that transaction fails the file is removed; a crash between the
save and the commit leaves a file no row names, which clean_orphan_files removes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from personalize import inference, jobs, results
from personalize.jobs import CancelRequested, LeaseLost, training_pairs
from personalize.models import EditorProfile, JobEvent, PersonalModel, TrainingJob
from personalize.pairs import pair_thumbnails
from rlcore import files
from rlcore.agent import Cancelled, finetune, validation_delta_e
from rlcore.data import PairSet
from rlcore.faces import weights_from_mask
from rlcore.modelfile import ModelFormatError, model_bytes

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """Media storage failed a write that the task can simply make again (workers/imports.py raises it when a
    pair's files cannot be stored): retried like a database blip, within the row's attempts."""


# Database, broker or storage blips: the task retries them (workers/tasks.py). Everything else is a bug or
# bad data.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, StorageUnavailable)

Status = TrainingJob.Status
MILESTONES = (0.25, 0.5, 0.75)


class BadData(Exception):
    """The job cannot succeed with its data: fail at once, do not retry."""


def checkpoint_dir() -> Path:
    """Checkpoints live on the worker's own disk, not in media storage: rlcore rewrites them every few
    seconds by renaming a temporary file into place, which an object store cannot do, and they are only
    worth anything to a worker that can read them back at once. docs/deployment.md explains what that means
    for a job re-queued on another machine."""
    return Path(settings.CHECKPOINT_DIR or Path(settings.VAR_DIR) / "checkpoints")


def checkpoint_path(job: TrainingJob) -> Path:
    return checkpoint_dir() / str(job.owner_id) / f"job-{job.pk}.ckpt"


def new_lease_owner() -> str:
    """Unique per execution: a duplicate delivery of the same message must not share the lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def load_pair_set(job: TrainingJob, on_pair: Callable[[], None] | None = None) -> tuple[PairSet, list[int]]:
    """The job's pairs as rlcore reads them, and their ids in the same order. on_pair() after each pair is
    read: from an object store, a thousand pairs' thumbnails take longer than the lease."""
    pairs = list(training_pairs(job.owner, job.tag).order_by("id"))
    if len(pairs) < 2:
        raise BadData(f"only {len(pairs)} pairs available; training needs at least 2")
    befores, afters, weights, views = [], [], [], []
    for pair in pairs:
        try:
            before, after, mask, view = pair_thumbnails(pair)
        except (OSError, ValueError) as exc:
            raise BadData(f"pair {pair.pk}: its stored thumbnails cannot be read ({exc})") from exc
        befores.append(before)
        afters.append(after)
        views.append(view)
        weights.append(
            weights_from_mask(mask if mask is not None else np.zeros(before.shape[:2]), job.face_weight)
        )
        if on_pair is not None:
            on_pair()
    cropped = any(pair.view_thumb for pair in pairs)
    pair_set = PairSet(
        before=np.stack(befores),
        after=np.stack(afters),
        weights=np.stack(weights).astype(np.float32) if job.face_weight > 0 else None,
        names=[pair.name or str(pair.pk) for pair in pairs],
        view=np.stack(views) if cropped else None,
    )
    return pair_set, [pair.pk for pair in pairs]


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

    def _write(self, **progress) -> None:
        self.cancel = jobs.report(self.job.pk, self.owner, **progress)

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
        eta = None if math.isnan(progress.eta_seconds) else round(max(progress.eta_seconds, 0.0), 1)
        if val is not None and (not self.curve or self.curve[-1][0] != progress.step):
            self.curve.append([int(progress.step), val])
        self._write(
            progress=round(min(max(progress.fraction, 0.0), 1.0), 4),
            step=int(progress.step),
            eta_seconds=eta,
            val_delta_e=val,
            curve=self.curve,
        )
        self.last_write = time.monotonic()
        while self.milestones and progress.fraction >= self.milestones[0]:
            milestone = self.milestones.pop(0)
            jobs.record_event(
                self.job, JobEvent.Kind.PROGRESS, f"{milestone:.0%} done", step=progress.step, val_delta_e=val
            )
        if time.monotonic() - self.last_checkpoint_event >= 30:
            jobs.record_event(self.job, JobEvent.Kind.CHECKPOINT, "checkpoint written", step=progress.step)
            self.last_checkpoint_event = time.monotonic()

    def should_stop(self) -> bool:
        if self.pending is not None and time.monotonic() - self.last_write >= settings.JOB_HEARTBEAT_SECONDS:
            self.on_progress(self.pending)
        self.heartbeat()
        return bool(self.cancel)


def compare_with_active(job: TrainingJob, pair_set: PairSet, pair_ids: list[int], result) -> dict | None:
    """The editor's active personal model and the new one, scored on the same validation pairs of the new
    job (None: there is no active model to compare with).

    A new model replaces the active one only when it validates better on the same pairs: a short or
    unlucky run must not silently replace a good model. Pairs the active model was fitted to would flatter
    it, so those are left out where its job's pairs can be named (personalize.results.job_split); where
    they cannot, or no validation pair is left, every validation pair counts.
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
    split = results.job_split(row)
    fitted = set() if split is None else {pair.pk for pair in split[0]}
    idx = [i for i in result.val_idx if pair_ids[i] not in fitted] or list(result.val_idx)
    return {
        "id": row.pk,
        "version": row.version,
        "val_delta_e": round(validation_delta_e(served.model, pair_set, idx), 4),
        "new_val_delta_e": round(validation_delta_e(result.model, pair_set, idx), 4),
        "pairs": len(idx),
    }


def publish(
    job: TrainingJob, owner: str, result, active: dict | None = None, training_seconds: float | None = None
) -> PersonalModel:
    """Save the model file to media storage, then record it: personalize.jobs.succeed.

    The new model becomes the editor's active one unless `active` (compare_with_active) validates better.
    """
    data = model_bytes(result.model)
    # The name is unique (a random part), so the storage never renames it; it is published by the row.
    name = default_storage.save(
        f"models/{job.owner_id}/job-{job.pk}-{uuid.uuid4().hex[:12]}.pt", ContentFile(data)
    )
    try:
        return jobs.succeed(
            job.pk,
            owner,
            file=name,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            base_version=str(result.model.metadata.get("base_version", "")),
            metrics=result.metrics,
            curve=[[int(s), round(float(v), 4)] for s, v in result.curve],
            training_seconds=training_seconds,
            active=active,
        )
    except BaseException:
        # Best effort: a failed delete must not hide why publishing failed. The file is then an orphan,
        # which clean_orphan_files removes.
        try:
            default_storage.delete(name)
        except Exception as exc:
            log.warning("job %s: could not delete the unpublished model file %s (%s)", job.pk, name, exc)
        raise


def remove_checkpoint(job: TrainingJob) -> None:
    files.remove(checkpoint_path(job))


def run_job(job_id: int) -> str:
    """Run (or resume) one job to the end. Returns what happened, for the task's result and the logs.

    Raises one of TRANSIENT_ERRORS when the job was handed back for a retry (workers/tasks.py retries
    those); every other ending is recorded on the job's row first.
    """
    owner = new_lease_owner()
    job = jobs.take_lease(job_id, owner)
    if job is None:
        return "skipped"
    reporter = JobReporter(job, owner)
    try:
        pair_set, pair_ids = load_pair_set(job, reporter.heartbeat)
        reporter.heartbeat(force=True)
        checkpoint = checkpoint_path(job)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = finetune(
            pair_set,
            base=inference.base_model().model,
            seconds=job.seconds,
            seed=job.seed,
            face_weight=job.face_weight,
            checkpoint_path=checkpoint,
            should_stop=reporter.should_stop,
            on_progress=reporter.on_progress,
        )
        training_seconds = time.monotonic() - started
        publish(job, owner, result, compare_with_active(job, pair_set, pair_ids, result), training_seconds)
    except (Cancelled, CancelRequested):
        jobs.stop_cancelled(job.pk, owner)
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
    except TRANSIENT_ERRORS as exc:
        return hand_back(job, owner, exc)
    except Exception as exc:
        # A bug or a broken deployment (say, an unreadable base model): retrying cannot help, and the
        # editor should see why at once rather than a job stuck in "running".
        fail(job, owner, f"internal error: {type(exc).__name__}: {exc}")
        raise
    remove_checkpoint(job)
    return "succeeded"


def hand_back(job: TrainingJob, owner: str, exc: BaseException) -> str:
    """A database or broker error: hand the job back and re-raise for Celery's retry, or, when that was
    the job's last attempt, leave it failed (personalize.jobs.hand_back decides) and return."""
    try:
        status = jobs.hand_back(job.pk, owner, f"{type(exc).__name__}: {exc}")
    except TRANSIENT_ERRORS:
        # The database is down too: Celery's retry finds the lease live, or expired and swept, and the
        # next lease counts the attempt either way.
        log.warning("job %s: could not hand the job back; the sweeper re-queues it", job.pk)
        raise exc from None
    if status == Status.QUEUED:
        raise exc
    if status == Status.FAILED:
        remove_checkpoint(job)
        return "failed"
    return "lease lost"


def fail(job: TrainingJob, owner: str, message: str) -> None:
    jobs.fail(job.pk, owner, message)
    remove_checkpoint(job)


def sweep_stale_jobs() -> dict:
    """The sweeper's pass (personalize.jobs.sweep_stale_jobs), then the checkpoints of the jobs it failed."""
    swept = jobs.sweep_stale_jobs()
    for job in TrainingJob.objects.filter(pk__in=swept["failed"]):
        remove_checkpoint(job)
    return swept


def clean_orphan_files(min_age_seconds: float = 3600) -> dict:
    """Remove model files no row names (from media storage) and this worker's checkpoints of finished jobs
    (from its own disk), once they are old enough not to be a publish or a job in progress."""
    cutoff = timezone.now() - timedelta(seconds=min_age_seconds)
    known_models = set(PersonalModel.objects.values_list("file", flat=True))
    removed = []
    try:
        owners = default_storage.listdir("models")[0]
    except FileNotFoundError:  # on a file system before the first model (a bucket has no folders to miss)
        owners = []
    for owner in owners:
        for filename in default_storage.listdir(f"models/{owner}")[1]:
            name = f"models/{owner}/{filename}"
            if name not in known_models and default_storage.get_modified_time(name) < cutoff:
                default_storage.delete(name)
                removed.append(name)
    active_jobs = set(TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE).values_list("pk", flat=True))
    root = checkpoint_dir()
    for path in root.glob("*/job-*.ckpt*"):
        job_id = int(path.name.split("-")[1].split(".")[0])
        if job_id not in active_jobs and path.stat().st_mtime < cutoff.timestamp():
            path.unlink(missing_ok=True)
            removed.append(path.relative_to(root).as_posix())
    return {"removed": removed}
