"""The training pipeline: lease, progress, publish, idempotency, sweeper; in-process and with a real worker."""

import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from personalize.accounts import create_or_get_editor
from personalize.inference import base_model_path
from personalize.jobs import create_job
from personalize.models import EditorProfile, PersonalModel, Prediction, TrainingJob
from personalize.pairs import upload_pair
from rlcore.modelfile import load_model
from tests.photos import pair_bytes
from tests.test_api import api_client, upload
from workers import training

Status = TrainingJob.Status


def add_pairs(user, count: int, start: int = 0) -> None:
    for i in range(count):
        before, after = pair_bytes(start + i)
        upload_pair(
            user, SimpleUploadedFile("b.jpg", before), SimpleUploadedFile("a.jpg", after), name=f"p{i}"
        )


def take_lease(job: TrainingJob, owner: str = "test-owner") -> TrainingJob:
    job.status = Status.RUNNING
    job.lease_owner = owner
    job.heartbeat_at = timezone.now()
    job.attempts += 1
    job.save()
    return job


def publish_fake_model(job: TrainingJob) -> PersonalModel:
    """Publish the base model as if it were this job's result (for tests that need a model row)."""
    take_lease(job)
    result = SimpleNamespace(
        model=load_model(base_model_path()),
        metrics={"val_delta_e_personal": 1.0},
        curve=[(10, 2.0), (20, 1.0)],
    )
    return training.publish(job, "test-owner", result)


@pytest.fixture
def editor(db, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 4
    user, _ = create_or_get_editor("erin", password="erin-password-123")
    return user


def media_files(media_root, pattern: str) -> list:
    return sorted(p.relative_to(media_root).as_posix() for p in media_root.glob(pattern) if p.is_file())


def test_run_job_in_process_publishes_one_model(editor, media_root, checkpoint_dir):
    add_pairs(editor, 6)
    job = create_job(editor, seconds=3, seed=1)
    assert training.run_job(job.pk) == "succeeded"

    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED and job.progress == 1.0 and job.error == ""
    model = PersonalModel.objects.get(owner=editor)
    assert job.model == model and model.version == 1 and model.job == job
    assert EditorProfile.objects.get(user=editor).active_model == model
    assert {"val_delta_e_no_edit", "val_delta_e_base", "val_delta_e_personal", "steps"} <= set(job.metrics)
    assert job.curve and job.started_at <= job.finished_at
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "succeeded"
    assert media_files(media_root, "models/*/*") == [model.file]
    # the checkpoint was on the worker's disk (its folder is there) and is gone
    assert checkpoint_dir.is_dir() and media_files(checkpoint_dir, "**/*") == []
    assert load_model((media_root / model.file).read_bytes()).metadata["kind"] == "personal"

    # A duplicate delivery of a finished job does nothing.
    assert training.run_job(job.pk) == "skipped"
    assert PersonalModel.objects.filter(owner=editor).count() == 1


def test_duplicate_delivery_while_lease_is_live_does_nothing(editor):
    add_pairs(editor, 4)
    job = take_lease(create_job(editor, seconds=3), owner="other-worker:1")
    assert training.run_job(job.pk) == "skipped"
    job.refresh_from_db()
    assert job.lease_owner == "other-worker:1" and job.attempts == 1


def test_cancelled_job_is_not_run(editor):
    add_pairs(editor, 4)
    job = create_job(editor, seconds=3)
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert training.run_job(job.pk) == "skipped"
    job.refresh_from_db()
    assert job.status == Status.CANCELLED and not PersonalModel.objects.exists()


def test_cancel_flag_stops_a_running_job_and_publishes_nothing(
    editor, media_root, checkpoint_dir, monkeypatch
):
    add_pairs(editor, 4)
    job = create_job(editor, seconds=30)
    polls = []

    original = training.JobReporter.should_stop

    def should_stop(self):
        polls.append(time.monotonic())
        if len(polls) == 3:
            TrainingJob.objects.filter(pk=self.job.pk).update(cancel_requested=True)
            self.last_write = 0.0  # let the next poll read the flag at once
        return original(self)

    monkeypatch.setattr(training.JobReporter, "should_stop", should_stop)
    started = time.monotonic()
    assert training.run_job(job.pk) == "cancelled"
    assert time.monotonic() - started < 15
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert not PersonalModel.objects.exists()
    assert media_files(media_root, "models/**/*") == [] and media_files(checkpoint_dir, "**/*") == []


def test_failed_publish_leaves_no_file_and_no_row(editor, media_root, monkeypatch):
    add_pairs(editor, 4)
    job = create_job(editor, seconds=2)

    def broken_update_or_create(*args, **kwargs):
        raise RuntimeError("database refused the write")

    monkeypatch.setattr(EditorProfile.objects, "update_or_create", broken_update_or_create)
    with pytest.raises(RuntimeError):
        training.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Status.FAILED and "database refused the write" in job.error
    assert not PersonalModel.objects.exists()
    assert media_files(media_root, "models/**/*") == []


def test_a_failed_clean_up_of_an_unpublished_model_does_not_hide_why_publishing_failed(
    editor, media_root, monkeypatch, caplog, settings
):
    from django.core.files.storage import default_storage

    settings.MIN_PAIRS_FOR_TRAINING = 0
    job = create_job(editor, seconds=2)

    def broken_update_or_create(*args, **kwargs):
        raise RuntimeError("database refused the write")

    class DeleteFails:
        """Media storage that saves but cannot delete (an outage that began mid-publish)."""

        def __getattr__(self, name):
            return getattr(default_storage, name)

        def delete(self, name):
            raise OSError("storage unavailable")

    monkeypatch.setattr(EditorProfile.objects, "update_or_create", broken_update_or_create)
    monkeypatch.setattr(training, "default_storage", DeleteFails())
    with pytest.raises(RuntimeError, match="database refused the write"):
        publish_fake_model(job)
    assert not PersonalModel.objects.exists()
    # The file stays, an orphan for clean_orphan_files; the failed delete is logged.
    [orphan] = media_files(media_root, "models/**/*")
    assert any(orphan in r.getMessage() and "storage unavailable" in r.getMessage() for r in caplog.records)


def test_sweeper_requeues_stale_jobs_and_fails_exhausted_ones(editor, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    add_pairs(editor, 4)
    other, _ = create_or_get_editor("frank")
    add_pairs(other, 4, start=10)
    stale = timezone.now() - timedelta(seconds=settings.JOB_LEASE_SECONDS + 5)

    requeue = take_lease(create_job(editor, seconds=3), owner="dead-worker")
    exhausted = take_lease(create_job(other, seconds=3), owner="dead-worker")
    TrainingJob.objects.filter(pk=exhausted.pk).update(attempts=2)
    TrainingJob.objects.filter(pk__in=[requeue.pk, exhausted.pk]).update(heartbeat_at=stale)

    result = training.sweep_stale_jobs()
    assert result["requeued"] == [requeue.pk] and result["failed"] == [exhausted.pk]
    requeue.refresh_from_db()
    exhausted.refresh_from_db()
    assert requeue.status == Status.QUEUED and requeue.lease_owner == ""
    assert exhausted.status == Status.FAILED and "ran out of attempts" in exhausted.error
    assert requeue.events.filter(kind="requeued").exists()
    assert exhausted.events.filter(kind="failed").exists()

    # the re-queued job resumes as attempt 2 and succeeds
    assert training.run_job(requeue.pk) == "succeeded"
    requeue.refresh_from_db()
    assert requeue.attempts == 2 and requeue.events.filter(kind="retried").exists()


def test_unreadable_base_model_fails_the_job_at_once(editor, settings, tmp_path, monkeypatch):
    add_pairs(editor, 4)
    job = create_job(editor, seconds=3)
    settings.BASE_MODEL_PATH = str(tmp_path / "missing.pt")
    with pytest.raises(Exception, match="missing.pt"):
        training.run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Status.FAILED and "missing.pt" in job.error


def test_job_with_unreadable_thumbnails_fails_at_once_with_reason(editor, media_root):
    add_pairs(editor, 4)
    job = create_job(editor, seconds=3)
    first = editor.pairs.order_by("id").first()
    (media_root / first.before_thumb.name).write_bytes(b"not a png")
    assert training.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == Status.FAILED and f"pair {first.pk}" in job.error


@pytest.mark.slow
def test_job_lifecycle_through_the_api_and_a_real_worker(celery_worker_process, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 6
    client = api_client("gina")
    for i in range(6):
        assert upload(client, *pair_bytes(40 + i)).status_code == 201
    job = client.post("/api/v1/jobs", {"seconds": 4}, format="json").json()

    deadline = time.monotonic() + 120
    seen = set()
    while time.monotonic() < deadline:
        state = client.get(f"/api/v1/jobs/{job['id']}").json()
        seen.add(state["status"])
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.3)
    assert state["status"] == "succeeded", state
    assert "running" in seen or state["started_at"]
    assert state["metrics"]["val_delta_e_personal"] <= state["metrics"]["val_delta_e_no_edit"]

    models = client.get("/api/v1/models").json()["results"]
    assert len(models) == 1 and models[0]["active"] and models[0]["id"] == state["model"]
    before, _ = pair_bytes(99)
    prediction = client.post(
        "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", before)}, format="multipart"
    ).json()
    assert prediction["model"] == {"id": state["model"], "version": 1, "kind": "personal"}
    download = client.get(f"/api/v1/models/{state['model']}/download")
    assert download.status_code == 200
    assert load_model(b"".join(download.streaming_content)).metadata["kind"] == "personal"
    kinds = [e["kind"] for e in client.get(f"/api/v1/jobs/{job['id']}/events").json()]
    assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "succeeded"


def test_a_model_that_validates_worse_than_the_active_one_is_published_inactive(editor):
    add_pairs(editor, 4)
    first = publish_fake_model(create_job(editor, seconds=3))  # validates at 1.0 (publish_fake_model)
    job = take_lease(create_job(editor, seconds=3))
    worse = SimpleNamespace(
        model=load_model(base_model_path()), metrics={"val_delta_e_personal": 4.35}, curve=[(10, 4.35)]
    )
    active = {
        "id": first.pk,
        "version": first.version,
        "val_delta_e": 2.02,
        "new_val_delta_e": 4.35,
        "pairs": 1,
    }
    second = training.publish(job, "test-owner", worse, active)

    assert EditorProfile.objects.get(user=editor).active_model == first
    assert second.version == 2 and second.metrics["activated"] is False
    assert (second.metrics["val_delta_e_active"], second.metrics["active_version"]) == (2.02, 1)
    assert (second.metrics["val_delta_e_compared"], second.metrics["compared_pairs"]) == (4.35, 1)
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED and job.model == second
    message = job.events.get(kind="succeeded").message
    assert "not active" in message and "4.35" in message and "2.02" in message


def test_a_second_job_is_compared_with_the_active_model_on_pairs_neither_was_fitted_to(editor, media_root):
    from rlcore.agent import Config, train_val_split, validation_delta_e

    add_pairs(editor, 10)
    assert training.run_job(create_job(editor, seconds=0, seed=1).pk) == "succeeded"
    first = PersonalModel.objects.get(owner=editor)
    assert first.metrics["activated"] is True and first.metrics["val_delta_e_active"] is None
    add_pairs(editor, 10, start=10)  # the editor uploads more, and trains again
    job = create_job(editor, seconds=0, seed=2)
    assert training.run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    second = job.model
    m = second.metrics

    first_train, _ = train_val_split(10, Config().val_fraction, 1)
    pairs, ids = training.load_pair_set(job)
    _, val_idx = train_val_split(len(pairs), Config().val_fraction, job.seed)
    first_ids = sorted(editor.pairs.values_list("id", flat=True))[:10]
    fitted = {first_ids[i] for i in first_train}
    unseen = [i for i in val_idx if ids[i] not in fitted]
    assert 0 < len(unseen) < len(val_idx)  # the seeds make the case: some validation pairs were fitted
    assert (m["active_version"], m["compared_pairs"]) == (1, len(unseen))
    for key, model in (("val_delta_e_active", first), ("val_delta_e_compared", second)):
        expected = validation_delta_e(load_model(media_root / model.file), pairs, unseen)
        assert m[key] == pytest.approx(expected, abs=1e-3)
    assert m["activated"] == (m["val_delta_e_compared"] < m["val_delta_e_active"])
    active = EditorProfile.objects.get(user=editor).active_model
    assert active == (second if m["activated"] else first)


def test_every_validation_pair_counts_when_the_active_models_pairs_cannot_be_named(editor):
    add_pairs(editor, 6)
    assert training.run_job(create_job(editor, seconds=0, seed=1).pk) == "succeeded"
    editor.pairs.order_by("id").first().delete()  # the first job's pairs can no longer be named
    add_pairs(editor, 2, start=6)
    job = create_job(editor, seconds=0, seed=2)
    assert training.run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.model.metrics["compared_pairs"] == job.model.metrics["val_pairs"]


def test_training_sees_the_whole_photo_of_a_cropped_pair_and_compares_the_region(editor):
    from personalize.pairs import pair_thumbnails
    from tests.photos import encode, photo, warm_and_bright
    from tests.test_api import _straightened_crop

    add_pairs(editor, 3)
    before = photo("coffee")
    after, _ = _straightened_crop(before, angle=3.0, area=0.6, export=0.7)
    upload_pair(
        editor,
        SimpleUploadedFile("b.jpg", encode(before, quality=95)),
        SimpleUploadedFile("a.jpg", encode(warm_and_bright(after), quality=85)),
        name="cropped",
    )
    pairs, _ = training.load_pair_set(create_job(editor, seconds=0))
    cropped = pairs.names.index("cropped")
    stored = pair_thumbnails(editor.pairs.get(name="cropped"))
    assert np.array_equal(pairs.before[cropped], stored.before) and np.array_equal(
        pairs.view[cropped], stored.view
    )
    assert np.abs(pairs.view[cropped].astype(float) - pairs.before[cropped]).mean() > 4, (
        "whole photo vs region"
    )
    others = [i for i in range(len(pairs)) if i != cropped]
    assert np.array_equal(pairs.view[others], pairs.before[others])


def test_a_progress_report_held_back_by_the_rate_limit_is_written_later_not_dropped(editor, settings):
    from rlcore.agent import Progress

    settings.JOB_HEARTBEAT_SECONDS = 0.2
    add_pairs(editor, 4)
    job = take_lease(create_job(editor, seconds=60))
    reporter = training.JobReporter(job, "test-owner")
    reporter.heartbeat(force=True)
    reporter.on_progress(Progress(3, 0.07, 55.8, 0.3, 0.1, 9.5))  # within the rate limit: held back
    job.refresh_from_db()
    assert job.step == 0 and job.eta_seconds is None
    time.sleep(0.25)
    assert reporter.should_stop() is False
    job.refresh_from_db()
    assert (job.step, job.progress, job.eta_seconds, job.val_delta_e) == (3, 0.07, 55.8, 9.5)


def test_the_heartbeat_keeps_coming_while_the_pairs_are_read(editor, settings, monkeypatch):
    # from an object store, a thousand pairs' thumbnails take longer than the lease
    settings.JOB_HEARTBEAT_SECONDS = 0
    add_pairs(editor, 4)
    job = create_job(editor, seconds=0)
    heartbeats = []
    read = training.pair_thumbnails

    def read_noting_the_heartbeat(pair):
        heartbeats.append(TrainingJob.objects.get(pk=job.pk).heartbeat_at)
        return read(pair)

    monkeypatch.setattr(training, "pair_thumbnails", read_noting_the_heartbeat)
    assert training.run_job(job.pk) == "succeeded"
    assert len(heartbeats) == 4
    assert all(a < b for a, b in zip(heartbeats, heartbeats[1:], strict=False))


def test_a_job_of_zero_seconds_publishes_the_instant_model_at_once(editor):
    add_pairs(editor, 6)
    job = create_job(editor, seconds=0)
    assert job.seconds == 0
    started = time.monotonic()
    assert training.run_job(job.pk) == "succeeded"
    assert time.monotonic() - started < 15
    job.refresh_from_db()
    m = job.model.metrics
    assert m["steps"] == 0 and m["val_delta_e_personal"] <= m["val_delta_e_no_edit"]


def test_retrain_outdated_queues_editors_whose_model_predates_the_base(editor):
    from io import StringIO

    from django.core.management import call_command

    other, _ = create_or_get_editor("otto", password="otto-password-123")
    for user in (editor, other):
        add_pairs(user, 4)
        publish_fake_model(create_job(user, seconds=3))  # made from the current base
    PersonalModel.objects.filter(owner=other).update(base_version="base-older")
    out = StringIO()
    call_command("retrain_outdated", "--seconds", "7", stdout=out)
    queued = TrainingJob.objects.filter(status=Status.QUEUED)
    assert [(j.owner.username, j.seconds) for j in queued] == [("otto", 7)]
    assert "1 queued, 0 skipped" in out.getvalue()
    call_command("retrain_outdated", stdout=(again := StringIO()))
    assert (
        "skipped otto" in again.getvalue() and TrainingJob.objects.filter(status=Status.QUEUED).count() == 1
    )

    # the retraining publishes a model that validates worse than otto's old one: it stays inactive, and
    # otto is not queued again by the next run (nor by any run until the base changes)
    job = take_lease(queued.get())
    worse = SimpleNamespace(
        model=load_model(base_model_path()), metrics={"val_delta_e_personal": 9.0}, curve=[(0, 9.0)]
    )
    old = EditorProfile.objects.get(user=other).active_model
    active = {"id": old.pk, "version": old.version, "val_delta_e": 1.0, "new_val_delta_e": 9.0, "pairs": 1}
    training.publish(job, "test-owner", worse, active)
    assert EditorProfile.objects.get(user=other).active_model == old
    call_command("retrain_outdated", stdout=(third := StringIO()))
    assert "0 queued, 0 skipped" in third.getvalue() and not TrainingJob.objects.filter(status=Status.QUEUED)


def test_activation_switches_models_and_the_cache_loads_each_once(editor, settings):
    from personalize import inference

    settings.MIN_PAIRS_FOR_TRAINING = 2
    add_pairs(editor, 2)
    first = publish_fake_model(create_job(editor, seconds=3))
    second = publish_fake_model(create_job(editor, seconds=3))
    assert (first.version, second.version) == (1, 2)
    _, token = create_or_get_editor(editor.username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    inference.cache.clear()
    loads_before = inference.cache.loads

    def predicted_model():
        before, _ = pair_bytes(77)
        response = client.post(
            "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", before)}, format="multipart"
        )
        return response.json()["model"]

    assert predicted_model()["version"] == 2  # publishing activated the newest
    assert client.post(f"/api/v1/models/{first.pk}/activate").json()["active"] is True
    assert [predicted_model()["version"] for _ in range(3)] == [1, 1, 1]
    assert client.post(f"/api/v1/models/{second.pk}/activate").status_code == 200
    assert predicted_model()["version"] == 2
    assert inference.cache.loads - loads_before == 2  # each model read from storage once
    listed = client.get("/api/v1/models").json()["results"]
    assert [(m["version"], m["active"]) for m in listed] == [(2, True), (1, False)]
    # Every prediction served is logged with the model that answered it.
    logged = Prediction.objects.filter(owner=editor).order_by("id")
    assert [p.model_id for p in logged] == [second.pk, first.pk, first.pk, first.pk, second.pk]
    assert all(p.model_kind == "personal" and p.latency_ms > 0 for p in logged)


def test_job_past_its_soft_time_limit_fails_with_a_clear_message(editor, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    add_pairs(editor, 4)
    job = create_job(editor, seconds=3)

    def hangs_past_the_limit(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(training, "finetune", hangs_past_the_limit)
    assert training.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == Status.FAILED and "time limit" in job.error
    assert job.events.last().kind == "failed"


def flaky_finetune(monkeypatch, failures: int | None) -> list:
    """training.finetune raising a database error the first `failures` times (None: every time)."""
    from django.db import OperationalError

    real = training.finetune
    calls = []

    def finetune(*args, **kwargs):
        calls.append(time.monotonic())
        if failures is None or len(calls) <= failures:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "finetune", finetune)
    return calls


def test_transient_errors_are_retried_by_celery_until_the_job_succeeds(
    editor, media_root, checkpoint_dir, monkeypatch
):
    from workers.tasks import run_training_job

    add_pairs(editor, 4)
    job = create_job(editor, seconds=2)
    calls = flaky_finetune(monkeypatch, failures=2)
    # apply(): Celery's own retry path (autoretry_for, backoff), each retry run at once in this process.
    assert run_training_job.apply(args=(job.pk,)).get() == "succeeded"

    assert len(calls) == 3
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED and job.attempts == 3 and job.error == ""
    assert PersonalModel.objects.filter(owner=editor).count() == 1
    kinds = [k for k in job.events.values_list("kind", flat=True) if k not in ("progress", "checkpoint")]
    assert kinds == ["queued", "started", "requeued", "retried", "requeued", "retried", "succeeded"]
    assert "OperationalError" in job.events.filter(kind="requeued").first().message
    assert media_files(checkpoint_dir, "**/*") == []


def test_transient_errors_fail_the_job_at_its_attempt_limit(
    editor, media_root, checkpoint_dir, monkeypatch, settings
):
    from workers.tasks import run_training_job

    # The one limit is the job's: Celery's retry count is unlimited and never decides.
    assert run_training_job.max_retries is None and run_training_job.retry_jitter
    assert set(run_training_job.autoretry_for) == set(training.TRANSIENT_ERRORS)
    settings.JOB_MAX_ATTEMPTS = 3
    add_pairs(editor, 4)
    job = create_job(editor, seconds=2)
    calls = flaky_finetune(monkeypatch, failures=None)
    assert run_training_job.apply(args=(job.pk,)).get() == "failed"

    assert len(calls) == 3  # one run per attempt, none after the last
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.attempts == 3 and job.lease_owner == ""
    assert "gave up after 3 attempts" in job.error and "OperationalError" in job.error
    assert list(job.events.values_list("kind", flat=True)).count("requeued") == 2
    assert job.events.last().kind == "failed"
    assert not PersonalModel.objects.exists()
    assert media_files(checkpoint_dir, "**/*") == []
    # A late duplicate of the message finds the job finished and does nothing.
    assert training.run_job(job.pk) == "skipped"


def test_a_job_handed_back_for_a_retry_is_not_resent_by_the_sweeper(editor):
    from personalize import jobs

    add_pairs(editor, 4)
    job = take_lease(create_job(editor, seconds=2))
    TrainingJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(days=1))
    assert jobs.hand_back(job.pk, "test-owner", "OperationalError: gone") == Status.QUEUED
    assert jobs.hand_back(job.pk, "test-owner", "again") == ""  # the lease is no longer ours
    assert training.sweep_stale_jobs() == {"requeued": [], "failed": [], "resent": []}


def test_a_model_can_only_be_activated_for_its_own_editor(editor):
    from personalize.models_ops import activate_model

    add_pairs(editor, 4)
    model = publish_fake_model(create_job(editor, seconds=3))
    other, _ = create_or_get_editor("olga")
    with pytest.raises(ValueError):
        activate_model(other, model)
    assert not EditorProfile.objects.filter(user=other, active_model__isnull=False).exists()
