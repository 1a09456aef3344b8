"""Bulk imports of pairs: the one home of a PairImport's states, and of sending its Celery message.

A bulk zip (up to MAX_BULK_UPLOAD_BYTES unpacked) takes minutes to decode, align, face-detect and store,
far past a web request's timeout, so the request only checks the zip's structure, stores it whole in media
storage and answers 202 with the import; a worker (workers/imports.py) imports its pairs one at a time.

    create_import         -> queued (the zip checked and stored, its message sent once committed);
                             -> succeeded at once when the zip holds no pair
    take_lease            queued -> running, one more attempt; or -> failed when out of attempts
    record_item           running: one pair's outcome, the cursor and the heartbeat, under the lease
    succeed               running -> succeeded (every pair recorded), the zip deleted
    fail                  running -> failed, with the reason (the pairs already stored stay)
    hand_back             running -> queued after a database or broker error; -> failed on the last attempt
    sweep_stale_imports   running, heartbeat stopped -> queued; -> failed when out of attempts; lost
                          messages of queued imports sent again

As for training jobs (personalize/jobs.py, which explains why), the row's lease and not the broker decides
who imports, and the retry limit is the same: the row's `attempts` against JOB_MAX_ATTEMPTS.

Nothing is half-stored: each pair's files are written, then its row is inserted in the same transaction
as its record here (`record_item`, which also checks the lease and the cursor), so a worker that dies
mid-pair leaves either the whole pair recorded or nothing but files that no row names (removed by
clean_orphan_files). A resumed import starts at the cursor, and a duplicate delivery finds the lease held.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from personalize.jobs import LeaseLost, lease_is_live, out_of_attempts, send_task
from personalize.models import PairImport
from personalize.pairs import check_bulk_zip
from workers.celery import RUN_PAIR_IMPORT

Status = PairImport.Status


def progress(row: PairImport) -> float:
    return 1.0 if row.status == Status.SUCCEEDED or not row.total else round(row.done / row.total, 4)


def eta_seconds(row: PairImport, now=None) -> float | None:
    """Seconds left at the pace so far (from the first start, so a pause for a retry slows the estimate)."""
    if row.status != Status.RUNNING or not row.done or row.started_at is None:
        return None
    elapsed = ((now or timezone.now()) - row.started_at).total_seconds()
    return round(elapsed / row.done * (row.total - row.done), 1)


# --- sending messages --------------------------------------------------------------------------------------


def enqueue(row: PairImport) -> None:
    """Send the import's message once the surrounding transaction commits (never for a rolled-back row)."""
    PairImport.objects.filter(pk=row.pk).update(enqueued_at=timezone.now())
    transaction.on_commit(partial(send, row.pk))


def send(import_id: int) -> None:
    if not send_task(RUN_PAIR_IMPORT, import_id):
        overdue = timezone.now() - timedelta(seconds=settings.QUEUED_RESEND_SECONDS)
        PairImport.objects.filter(pk=import_id, status=Status.QUEUED).update(enqueued_at=overdue)


# --- the API's transition ----------------------------------------------------------------------------------


def create_import(owner, uploaded, tags: list[str]) -> PairImport:
    """Check the zip (UploadError refuses it whole, nothing stored), store it, -> queued.

    Only the zip's directory and its entries' checksums are read here: no photo is decoded.
    """
    items, skipped = check_bulk_zip(uploaded)
    file_name = PurePosixPath(getattr(uploaded, "name", "") or "pairs.zip").name[:255]
    if not items:  # nothing for a worker to do: the answer is already known
        now = timezone.now()
        return PairImport.objects.create(
            owner=owner,
            status=Status.SUCCEEDED,
            file_name=file_name,
            tags=tags,
            skipped=skipped,
            started_at=now,
            finished_at=now,
        )
    uploaded.seek(0)
    # A random name: the storage never renames it, and no editor can guess another's.
    archive = default_storage.save(f"imports/{owner.pk}/{uuid.uuid4().hex}.zip", uploaded)
    try:
        with transaction.atomic():
            row = PairImport.objects.create(
                owner=owner,
                file_name=file_name,
                archive=archive,
                tags=tags,
                total=len(items),
                skipped=skipped,
            )
            enqueue(row)
    except BaseException:
        default_storage.delete(archive)
        raise
    return row


# --- the worker's transitions (each checks that the lease is still the caller's) ---------------------------


def _finish(row: PairImport, status: str, error: str = "") -> None:
    """Mark the import finished and delete its zip (the caller holds the row lock)."""
    archive = row.archive
    row.status = status
    row.error = error
    row.finished_at = timezone.now()
    row.lease_owner = ""
    row.archive = ""
    row.save()
    if archive:
        # After the commit: a rolled-back finish must still find its zip. A failed delete leaves an
        # orphan that clean_orphan_files removes.
        transaction.on_commit(partial(default_storage.delete, archive))


def _locked_lease(import_id: int, owner: str) -> PairImport:
    """The row, locked, when `owner` still holds its lease; LeaseLost when not (inside atomic)."""
    row = PairImport.objects.select_for_update().get(pk=import_id)
    if row.lease_owner != owner or row.status != Status.RUNNING:
        raise LeaseLost(f"import {import_id}: the lease is no longer ours")
    return row


def take_lease(import_id: int, owner: str) -> PairImport | None:
    """queued -> running, one more attempt; None when this delivery has nothing to do (finished, a live
    lease held by someone else, or out of attempts: then the import fails)."""
    with transaction.atomic():
        row = PairImport.objects.select_for_update().filter(pk=import_id).first()
        if row is None or row.status in PairImport.FINISHED:
            return None
        now = timezone.now()
        if lease_is_live(row, now):
            return None
        if out_of_attempts(row):
            _finish(row, Status.FAILED, f"gave up after {row.attempts} attempts")
            return None
        row.status = Status.RUNNING
        row.attempts += 1
        row.lease_owner = owner
        row.heartbeat_at = now
        row.started_at = row.started_at or now
        row.save()
        return row


def record_item(
    import_id: int, owner: str, index: int, stored: dict | None = None, skipped: dict | None = None
):
    """Pair `index`'s outcome, the cursor moved past it and the heartbeat, under `owner`'s lease.

    Called inside the transaction that stores the pair (personalize.pairs.import_bulk_item), so both
    commit together. Raises LeaseLost when the lease is no longer ours or the pair was already recorded
    (a second delivery got there first): the caller's transaction then rolls back, files included.
    """
    with transaction.atomic():
        row = _locked_lease(import_id, owner)
        if row.done != index:
            raise LeaseLost(f"import {import_id}: pair {index} is not next (the cursor is at {row.done})")
        if stored is not None:
            row.stored = [*row.stored, stored]
        if skipped is not None:
            row.skipped = [*row.skipped, skipped]
        row.done = index + 1
        row.heartbeat_at = timezone.now()
        row.save(update_fields=["stored", "skipped", "done", "heartbeat_at"])


def succeed(import_id: int, owner: str) -> None:
    with transaction.atomic():
        row = _locked_lease(import_id, owner)
        _finish(row, Status.SUCCEEDED)


def fail(import_id: int, owner: str, message: str) -> bool:
    """running -> failed, with the reason the editor sees; False when the lease was no longer ours."""
    try:
        with transaction.atomic():
            _finish(_locked_lease(import_id, owner), Status.FAILED, message)
    except LeaseLost:
        return False
    return True


def hand_back(import_id: int, owner: str, reason: str) -> str:
    """After a database or broker error: -> queued for Celery's retry, or -> failed on the last attempt.

    Returns the new status, or "" when the lease was no longer ours.
    """
    try:
        with transaction.atomic():
            row = _locked_lease(import_id, owner)
            if out_of_attempts(row):
                _finish(
                    row,
                    Status.FAILED,
                    f"gave up after {row.attempts} attempts; the last one failed with {reason}",
                )
                return Status.FAILED
            row.status = Status.QUEUED
            row.lease_owner = ""
            row.heartbeat_at = None
            row.enqueued_at = timezone.now()  # Celery's retry is its message now: the sweeper must wait
            row.save(update_fields=["status", "lease_owner", "heartbeat_at", "enqueued_at"])
            return Status.QUEUED
    except LeaseLost:
        return ""


# --- the sweeper ------------------------------------------------------------------------------------------


def sweep_stale_imports() -> dict:
    """Re-queue running imports whose heartbeat stopped (a dead worker: the next one resumes at the
    cursor), fail those out of attempts, and re-send queued imports that nobody started for a long time
    (a message the broker lost; a duplicate is harmless, the lease decides). Returns import ids."""
    now = timezone.now()
    requeued, failed, resent = [], [], []
    with transaction.atomic():
        stale = PairImport.objects.select_for_update(skip_locked=True).filter(
            status=Status.RUNNING, heartbeat_at__lt=now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
        )
        for row in stale:
            if out_of_attempts(row):
                _finish(
                    row,
                    Status.FAILED,
                    f"the worker stopped responding and the import ran out of attempts ({row.attempts})",
                )
                failed.append(row.pk)
                continue
            row.status = Status.QUEUED
            row.lease_owner = ""
            row.save(update_fields=["status", "lease_owner"])
            enqueue(row)
            requeued.append(row.pk)
        lost = PairImport.objects.select_for_update(skip_locked=True).filter(
            status=Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=settings.QUEUED_RESEND_SECONDS)
        )
        for row in lost:
            enqueue(row)
            resent.append(row.pk)
    return {"requeued": requeued, "failed": failed, "resent": resent}
