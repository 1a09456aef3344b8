"""Importing one bulk zip: take the lease, read the zip from media storage, store its pairs one at a time.

This module only orchestrates. Every change to the import's row is a transition in personalize/imports.py
(which explains the lease and why nothing is half-stored), and each pair is checked and stored by
personalize.pairs.import_bulk_item, exactly as a single-pair upload is, so a refused file gets the same
reason. The zip is read through Django's storage API, so the worker need not share a disk with the web
process that received it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.core.files.storage import default_storage
from django.utils import timezone

from personalize import imports
from personalize.images import UploadError
from personalize.jobs import LeaseLost
from personalize.models import Pair, PairImport
from personalize.pairs import import_bulk_item, open_bulk_zip, plan_bulk_zip
from workers.training import TRANSIENT_ERRORS, StorageUnavailable, new_lease_owner

log = logging.getLogger(__name__)


def store_item(owner, archive, item, tags, record) -> None:
    """import_bulk_item, with storing a pair told apart from reading the zip.

    Reading the zip's entries raises UploadError (personalize.pairs turns zipfile's OSError into one), so
    an OSError out of here is media storage failing to write the pair's files (none of them is kept):
    StorageUnavailable, which the task retries from this pair on.
    """
    try:
        import_bulk_item(owner, archive, item, tags, record)
    except OSError as exc:
        raise StorageUnavailable(
            f"the pair '{item.name}' could not be stored ({type(exc).__name__}: {exc})"
        ) from exc


def run_import(import_id: int) -> str:
    """Import (or resume) one bulk zip to the end. Returns what happened, for the task's result and logs.

    Raises one of TRANSIENT_ERRORS when the import was handed back for a retry (workers/tasks.py retries
    those); every other ending is recorded on the row first.
    """
    owner = new_lease_owner()
    row = imports.take_lease(import_id, owner)
    if row is None:
        return "skipped"
    try:
        with default_storage.open(row.archive, "rb") as handle, open_bulk_zip(handle) as archive:
            items, _ = plan_bulk_zip(archive)  # the plan the request made: same zip, same order
            for index in range(row.done, len(items)):
                record = partial(imports.record_item, import_id, owner, index)
                store_item(row.owner, archive, items[index], row.tags, record)
        imports.succeed(import_id, owner)
    except LeaseLost:
        log.warning("import %s: lease lost, leaving it to its new owner", import_id)
        return "lease lost"
    except TRANSIENT_ERRORS as exc:
        try:
            status = imports.hand_back(import_id, owner, f"{type(exc).__name__}: {exc}")
        except TRANSIENT_ERRORS:
            # The database is down too: Celery's retry finds the lease live, or expired and swept.
            raise exc from None
        if status == imports.Status.QUEUED:
            raise
        return "failed" if status else "lease lost"
    except (UploadError, OSError) as exc:
        # Only reading the zip gets here (store_item answers a failed write with StorageUnavailable). The
        # zip was checked when it arrived: one that cannot be read now was lost or damaged in storage.
        reason = exc.reason if isinstance(exc, UploadError) else str(exc)
        imports.fail(import_id, owner, f"the stored zip cannot be read ({reason})")
        return "failed"
    except Exception as exc:
        imports.fail(import_id, owner, f"internal error: {type(exc).__name__}: {exc}")
        raise
    return "succeeded"


def sweep_stale_imports() -> dict:
    return imports.sweep_stale_imports()


def _listdir(path: str) -> tuple[list[str], list[str]]:
    try:
        return default_storage.listdir(path)
    except FileNotFoundError:  # on a file system before the first upload (a bucket has no folders to miss)
        return [], []


def clean_orphan_files(min_age_seconds: float = 3600) -> dict:
    """Remove, once old enough not to be an upload in progress, the zips no unfinished import names (a web
    process killed between storing the zip and committing its row, a failed delete) and the pair files no
    pair names (a process killed between writing a pair's files and committing its row)."""
    cutoff = timezone.now() - timedelta(seconds=min_age_seconds)
    removed = []

    def remove_if_old(name: str) -> None:
        if default_storage.get_modified_time(name) < cutoff:
            default_storage.delete(name)
            removed.append(name)

    archives = set(PairImport.objects.exclude(archive="").values_list("archive", flat=True))
    for owner in _listdir("imports")[0]:
        for filename in _listdir(f"imports/{owner}")[1]:
            if f"imports/{owner}/{filename}" not in archives:
                remove_if_old(f"imports/{owner}/{filename}")
    for owner in _listdir("pairs")[0]:
        if not owner.isdigit():
            continue
        # A pair's files live under pairs/<owner>/<uid>/ (personalize.models.pair_upload_path).
        known = {str(uid) for uid in Pair.objects.filter(owner_id=owner).values_list("uid", flat=True)}
        for folder in _listdir(f"pairs/{owner}")[0]:
            if folder not in known:
                for filename in _listdir(f"pairs/{owner}/{folder}")[1]:
                    remove_if_old(f"pairs/{owner}/{folder}/{filename}")
    return {"removed": removed}
