"""Bulk imports off the request: 202 and an import to follow, a worker storing one pair at a time, resuming.

The API tests run the worker's function in this process; the last tests use real worker processes (one
killed mid-import) and the command-line client against the live server.
"""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from personalize import imports
from personalize.accounts import create_or_get_editor
from personalize.models import Pair, PairImport
from tests.conftest import kill_worker, start_worker, stop_process, subprocess_env, wait_for
from tests.photos import pair_bytes
from tests.test_api import api_client, make_zip, stored_files, upload
from workers.imports import clean_orphan_files, run_import


@pytest.fixture
def alice(db):
    return api_client("alice")


def shoot(count: int, start: int = 200) -> dict[str, bytes]:
    entries = {}
    for i in range(count):
        before, after = pair_bytes(start + i)
        entries[f"before/p{i:02d}.jpg"] = before
        entries[f"after/p{i:02d}.jpg"] = after
    return entries


def post_zip(client, entries: dict[str, bytes], **fields):
    return client.post("/api/v1/pairs/bulk", {"file": make_zip(entries), **fields}, format="multipart")


def pair_files_have_rows(media_root) -> bool:
    """Every file under pairs/ belongs to a pair row (nothing half-stored)."""
    uids = {str(uid) for uid in Pair.objects.values_list("uid", flat=True)}
    return all(path.parent.name in uids for path in (media_root / "pairs").rglob("*") if path.is_file())


# --- the API ----------------------------------------------------------------------------------------------


def test_bulk_upload_answers_202_and_the_import_reports_progress_and_every_file(alice, media_root):
    entries = shoot(3)
    entries["before/broken.jpg"] = b"this is text, not a photo"
    entries["after/broken.jpg"] = pair_bytes(220)[1]
    entries["before/lonely.jpg"] = pair_bytes(221)[0]
    response = post_zip(alice, entries, tags="wedding")
    assert response.status_code == 202, response.content
    started = response.json()
    assert response["Location"] == started["url"] == f"/api/v1/pairs/imports/{started['id']}"
    # Nothing decoded or stored yet: the zip is checked, kept in media storage, and its pairs counted.
    assert started["status"] == "queued" and started["total"] == 4 and started["done"] == 0
    assert started["progress"] == 0.0 and started["stored"] == [] and Pair.objects.count() == 0
    assert started["skipped"] == [{"name": "before/lonely.jpg", "reason": "no after/ file with this name"}]
    archive = PairImport.objects.get().archive
    assert default_storage.exists(archive)

    assert run_import(started["id"]) == "succeeded"
    body = alice.get(started["url"]).json()
    assert body["status"] == "succeeded" and body["done"] == body["total"] == 4 and body["progress"] == 1.0
    assert sorted(p["name"] for p in body["stored"]) == ["p00", "p01", "p02"]
    assert Pair.objects.filter(tags__name="wedding").count() == 3
    # A refused pair gets the words the single-pair upload answers with for the same files.
    single = upload(
        alice, entries["before/broken.jpg"], entries["after/broken.jpg"], before_name="broken.jpg"
    )
    reasons = {item["name"]: item["reason"] for item in body["skipped"]}
    assert reasons["broken"] == f"before: {single.json()['before'][0]}"
    assert body["eta_seconds"] is None and body["finished_at"] is not None
    assert [row["id"] for row in alice.get("/api/v1/pairs/imports").json()["results"]] == [started["id"]]


def test_progress_and_eta_while_running(alice):
    response = post_zip(alice, shoot(4))
    row = PairImport.objects.get(pk=response.json()["id"])
    row.status, row.done, row.started_at = (
        PairImport.Status.RUNNING,
        1,
        timezone.now() - timedelta(seconds=10),
    )
    row.save()
    body = alice.get(response["Location"]).json()
    assert body["progress"] == 0.25
    assert 29 <= body["eta_seconds"] <= 31  # 10 s for the first pair, three to go


def test_another_editors_import_answers_404(alice):
    response = post_zip(alice, shoot(1))
    bob = api_client("bob")
    assert bob.get(response["Location"]).status_code == 404
    assert bob.get("/api/v1/pairs/imports/999999").status_code == 404
    assert bob.get("/api/v1/pairs/imports").json()["results"] == []


def test_a_zip_without_pairs_is_finished_at_once_and_stores_nothing(alice, media_root):
    response = post_zip(alice, {"before/a.jpg": pair_bytes(1)[0], "notes.txt": b"hello"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "succeeded" and body["total"] == 0 and body["progress"] == 1.0
    assert {item["name"] for item in body["skipped"]} == {"before/a.jpg", "notes.txt"}
    assert stored_files(media_root) == []


def test_a_refused_zip_stores_nothing(alice, media_root):
    response = post_zip(alice, {**shoot(1), "../evil/before/b.jpg": b"x"})
    assert response.status_code == 400 and "unsafe path" in response.json()["file"][0]
    assert PairImport.objects.count() == 0 and stored_files(media_root) == []


# --- the worker's side, in this process -------------------------------------------------------------------


class Killed(BaseException):
    """Stands for the worker dying: not an Exception, so nothing on the way catches it."""


def test_an_import_stopped_mid_pair_resumes_at_the_cursor_without_duplicates(
    alice, media_root, settings, monkeypatch
):
    entries = shoot(4)
    # The same photos again, last in the zip's order: a duplicate of a pair stored before the stop.
    entries["before/zcopy.jpg"] = entries["before/p00.jpg"]
    entries["after/zcopy.jpg"] = entries["after/p00.jpg"]
    import_id = post_zip(alice, entries).json()["id"]
    record = imports.record_item
    calls = []

    def dies_on_the_third_pair(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise Killed  # inside the pair's transaction: its files were written, its row not committed
        return record(*args, **kwargs)

    monkeypatch.setattr(imports, "record_item", dies_on_the_third_pair)
    with pytest.raises(Killed):
        run_import(import_id)
    row = PairImport.objects.get(pk=import_id)
    assert row.status == "running" and row.done == 2 and Pair.objects.count() == 2
    assert pair_files_have_rows(media_root)  # the third pair's files went with its transaction

    # A second delivery while the lease is live does nothing; once the heartbeat is old, the sweeper
    # re-queues the import and the next delivery resumes at the cursor.
    monkeypatch.setattr(imports, "record_item", record)
    assert run_import(import_id) == "skipped"
    PairImport.objects.filter(pk=import_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert imports.sweep_stale_imports()["requeued"] == [import_id]
    assert run_import(import_id) == "succeeded"
    row = PairImport.objects.get(pk=import_id)
    assert row.done == row.total == 5 and row.attempts == 2
    assert sorted(p["name"] for p in row.stored) == ["p00", "p01", "p02", "p03"]
    assert row.skipped == [
        {
            "name": "zcopy",
            "reason": f"already uploaded as pair {row.stored[0]['id']}",
            "pair": row.stored[0]["id"],
        }
    ]
    assert Pair.objects.count() == 4 and pair_files_have_rows(media_root)


def test_transient_errors_are_retried_by_celery_and_each_retry_resumes_at_the_cursor(alice, monkeypatch):
    from django.db import OperationalError

    from workers import imports as worker_imports
    from workers.tasks import run_pair_import, run_training_job

    # One retry policy for both tasks, and the row's attempts as the one limit.
    assert run_pair_import.autoretry_for == run_training_job.autoretry_for
    assert run_pair_import.max_retries is None and run_pair_import.acks_late
    import_id = post_zip(alice, shoot(3)).json()["id"]
    real = worker_imports.import_bulk_item
    calls = []

    def flaky(owner, archive, item, tags, record):
        calls.append(item.name)
        if len(calls) in (2, 4):
            raise OperationalError("server closed the connection unexpectedly")
        return real(owner, archive, item, tags, record)

    monkeypatch.setattr(worker_imports, "import_bulk_item", flaky)
    # apply(): Celery's own retry path (autoretry_for), each retry run at once in this process.
    assert run_pair_import.apply(args=(import_id,)).get() == "succeeded"
    assert calls == ["p00", "p01", "p01", "p02", "p02"]
    row = PairImport.objects.get(pk=import_id)
    assert row.attempts == 3 and row.done == 3 and [p["name"] for p in row.stored] == ["p00", "p01", "p02"]
    assert Pair.objects.count() == 3


def fail_writes(monkeypatch, when) -> list[str]:
    """Media storage's writes raise OSError when `when(name)` (an outage); returns the names refused."""
    from django.core.files.storage import storages

    storage_class = type(storages["default"])
    real_save = storage_class._save
    refused = []

    def save(storage, name, content):
        if when(name):
            refused.append(name)
            raise OSError(f"storage unavailable: {name}")
        return real_save(storage, name, content)

    monkeypatch.setattr(storage_class, "_save", save)
    return refused


def test_a_pair_that_cannot_be_stored_is_retried_from_that_pair(alice, media_root, monkeypatch):
    from workers.tasks import run_pair_import

    import_id = post_zip(alice, shoot(3)).json()["id"]
    # The second pair's after thumbnail, once: its before, after and before thumbnail are already written.
    refused = fail_writes(
        monkeypatch,
        lambda name: name.endswith("after_thumb.png") and Pair.objects.count() == 1 and not refused,
    )
    assert run_pair_import.apply(args=(import_id,)).get() == "succeeded"
    assert len(refused) == 1
    row = PairImport.objects.get(pk=import_id)
    assert row.status == "succeeded" and row.error == "" and row.attempts == 2
    assert [p["name"] for p in row.stored] == ["p00", "p01", "p02"] and row.skipped == []
    assert Pair.objects.count() == 3 and pair_files_have_rows(media_root)


def test_a_pair_never_stored_fails_the_import_at_its_attempt_limit_saying_so(
    alice, media_root, monkeypatch, settings
):
    from workers.tasks import run_pair_import

    import_id = post_zip(alice, shoot(2)).json()["id"]
    refused = fail_writes(monkeypatch, lambda name: Pair.objects.count() == 1)
    assert run_pair_import.apply(args=(import_id,)).get() == "failed"
    row = PairImport.objects.get(pk=import_id)
    assert row.status == "failed" and row.attempts == settings.JOB_MAX_ATTEMPTS == len(refused)
    assert "the pair 'p01' could not be stored (OSError: storage unavailable" in row.error
    assert "zip" not in row.error
    assert [p["name"] for p in row.stored] == ["p00"] and pair_files_have_rows(media_root)


class ReadsFail(io.BytesIO):
    """A stored zip whose directory reads but whose entries' data does not (storage failing mid-read)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            self.data_end = archive.start_dir

    def read(self, size=-1):
        if self.tell() < self.data_end:
            raise OSError("connection reset while reading")
        return super().read(size)


@pytest.mark.parametrize("point", ["open", "read"])
def test_a_stored_zip_that_cannot_be_read_fails_the_import_saying_so(alice, media_root, monkeypatch, point):
    from workers import imports as worker_imports

    import_id = post_zip(alice, shoot(2)).json()["id"]

    class Storage:
        def __getattr__(self, name):
            return getattr(default_storage, name)

        def open(self, name, mode="rb"):
            with default_storage.open(name, mode) as handle:
                data = handle.read()
            if point == "open":
                raise FileNotFoundError(f"no such file: {name}")
            return ReadsFail(data)

    monkeypatch.setattr(worker_imports, "default_storage", Storage())
    assert run_import(import_id) == "failed"
    row = PairImport.objects.get(pk=import_id)
    assert row.error.startswith("the stored zip cannot be read (")
    assert ("no such file" if point == "open" else "connection reset while reading") in row.error
    assert row.status == "failed" and row.done == 0 and Pair.objects.count() == 0


def test_a_pair_recorded_by_another_delivery_is_not_stored_twice(alice, media_root):
    import_id = post_zip(alice, shoot(2)).json()["id"]
    row = imports.take_lease(import_id, "worker-a")
    imports.record_item(import_id, "worker-a", 0, skipped={"name": "p00", "reason": "test"})
    with pytest.raises(imports.LeaseLost):  # pair 0 again: the cursor has moved past it
        imports.record_item(import_id, "worker-a", 0, skipped={"name": "p00", "reason": "again"})
    with pytest.raises(imports.LeaseLost):  # not the lease holder
        imports.record_item(import_id, "worker-b", 1, skipped={"name": "p01", "reason": "test"})
    assert PairImport.objects.get(pk=row.pk).skipped == [{"name": "p00", "reason": "test"}]


def test_out_of_attempts_fails_and_deletes_the_zip(alice, settings, django_capture_on_commit_callbacks):
    import_id = post_zip(alice, shoot(1)).json()["id"]
    archive = PairImport.objects.get(pk=import_id).archive
    PairImport.objects.filter(pk=import_id).update(attempts=settings.JOB_MAX_ATTEMPTS)
    with django_capture_on_commit_callbacks(execute=True):
        assert run_import(import_id) == "skipped"
    row = PairImport.objects.get(pk=import_id)
    assert row.status == "failed" and "gave up after" in row.error
    assert row.archive == "" and not default_storage.exists(archive)


def test_orphan_zips_and_pair_files_are_cleaned(alice, media_root):
    orphan_zip = default_storage.save("imports/1/lost.zip", io.BytesIO(b"zip"))
    orphan_pair = default_storage.save("pairs/1/not-a-pair/before.jpg", io.BytesIO(b"jpg"))
    kept = post_zip(alice, shoot(1)).json()
    archive = PairImport.objects.get(pk=kept["id"]).archive
    removed = clean_orphan_files(min_age_seconds=0)["removed"]
    assert sorted(removed) == sorted([orphan_zip, orphan_pair])
    assert default_storage.exists(archive)


# --- real workers -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_import_resumes_on_another_without_duplicates(
    transactional_db, media_root, tmp_path, settings
):
    client = api_client("kim")
    entries = shoot(30, start=300)
    first = start_worker(
        subprocess_env(media_root), "import-a", queues="default", log_path=tmp_path / "a.log"
    )
    second = None
    try:
        import_id = post_zip(client, entries).json()["id"]
        wait_for(
            lambda: PairImport.objects.get(pk=import_id).done >= 2,
            timeout=90,
            interval=0.05,
            message="2 pairs",
        )
        kill_worker(first)
        killed = PairImport.objects.get(pk=import_id)
        assert killed.status == "running" and killed.done < killed.total, "the import ended before the kill"
        second = start_worker(
            subprocess_env(media_root), "import-b", queues="default", log_path=tmp_path / "b.log"
        )
        # The sweeper (beat runs it every SWEEP_INTERVAL_SECONDS) sees the heartbeat stop and re-queues it.
        settings.JOB_LEASE_SECONDS = 1
        wait_for(lambda: imports.sweep_stale_imports()["requeued"], timeout=30, message="the sweeper")
        row = wait_for(
            lambda: PairImport.objects.filter(pk=import_id, status__in=PairImport.FINISHED).first(),
            timeout=180,
            message="the import to finish",
        )
    finally:
        if second is not None:
            stop_process(second)
        if first.poll() is None:
            kill_worker(first)
    assert row.status == "succeeded" and row.done == row.total == 30 and row.attempts == 2, row.error
    names = [p["name"] for p in row.stored]
    assert sorted(names) == [f"p{i:02d}" for i in range(30)] and row.skipped == []
    assert Pair.objects.count() == 30 and sorted(Pair.objects.values_list("name", flat=True)) == sorted(names)
    clean_orphan_files(min_age_seconds=0)  # what the killed worker's last pair may have left
    assert pair_files_have_rows(media_root) and not default_storage.exists(killed.archive)


@pytest.mark.slow
def test_the_client_sends_a_zip_and_follows_the_import_a_real_worker_runs(
    live_server, celery_worker_process, tmp_path, monkeypatch, capsys
):
    from personalize.client import main

    _, token = create_or_get_editor("lea", password="lea-password-123")
    monkeypatch.setenv("PERSONALIZE_SERVER", live_server.url)
    monkeypatch.setenv("PERSONALIZE_TOKEN", token)
    monkeypatch.setenv("PERSONALIZE_CONFIG", str(tmp_path / "config.json"))
    entries = shoot(3, start=400)
    entries["before/broken.jpg"], entries["after/broken.jpg"] = b"not a photo", pair_bytes(403)[1]
    archive = tmp_path / "shoot.zip"
    archive.write_bytes(make_zip(entries).read())

    code = main(["import", str(archive), "--tag", "lea", "--poll", "0.2"])
    out, err = capsys.readouterr()
    assert code == 1, err  # one pair refused
    assert out.strip() == "imported 3, skipped 0 already uploaded, refused 1"
    assert "skipped: broken: before: not a readable image" in err
    assert Pair.objects.filter(owner__username="lea", tags__name="lea").count() == 3

    code = main(["import-status", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["status"] == "succeeded"
