"""Fault tests with real Redis and real worker processes: nothing is lost, nothing is published twice.

Workers here use a short lease (JOB_LEASE_SECONDS) and a beat process sweeping every second, so that a
dead worker's job is re-queued within seconds instead of the production half-minute.
"""

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from personalize.accounts import create_or_get_editor
from personalize.devstack import free_port, start_redis
from personalize.jobs import cancel_job, create_job
from personalize.models import PersonalModel, TrainingJob
from personalize.pairs import upload_pair
from tests.conftest import (
    broker,
    kill_worker,
    start_beat,
    start_worker,
    stop_process,
    subprocess_env,
    wait_for,
)
from tests.photos import pair_bytes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST_RECOVERY = {"JOB_LEASE_SECONDS": "4", "SWEEP_INTERVAL_SECONDS": "1", "QUEUED_RESEND_SECONDS": "20"}
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def fast_recovery(settings):
    settings.MIN_PAIRS_FOR_TRAINING = 2
    settings.JOB_LEASE_SECONDS = 4
    settings.QUEUED_RESEND_SECONDS = 20


def editor_with_pairs(name: str, count: int = 3, start: int = 0):
    user, _ = create_or_get_editor(name)
    for i in range(count):
        before, after = pair_bytes(start + i)
        upload_pair(
            user, SimpleUploadedFile("b.jpg", before), SimpleUploadedFile("a.jpg", after), name=f"p{i}"
        )
    return user


def job_state(job_id: int) -> TrainingJob:
    return TrainingJob.objects.get(pk=job_id)


def files_under(root, pattern: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())


def checkpoints(pattern: str = "**/*") -> list[str]:
    """The workers' checkpoint files (on their local disk, CHECKPOINT_DIR), including temporary ones."""
    return files_under(Path(settings.CHECKPOINT_DIR), pattern)


def assert_one_model_per_job_and_no_orphans(media_root, jobs):
    for job in jobs:
        assert job.status == "succeeded", (job.pk, job.status, job.error)
        assert PersonalModel.objects.filter(job=job).count() == 1
    published = sorted(PersonalModel.objects.values_list("file", flat=True))
    assert files_under(media_root, "models/**/*") == published
    assert checkpoints() == []


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:
        stop_process(process)


def test_sigkilled_worker_mid_job_resumes_on_a_new_worker(fast_recovery, media_root, tmp_path, processes):
    env = subprocess_env(media_root, **FAST_RECOVERY)
    processes.append(start_beat(env, tmp_path / "beat-schedule", tmp_path / "beat.log"))
    first = start_worker(env, "doomed", log_path=tmp_path / "doomed.log")
    processes.append(first)

    user = editor_with_pairs("kim", 4)
    # Long enough that early stopping (never before 30 % of the budget) comes after the first checkpoint.
    job = create_job(user, seconds=30, seed=5)
    wait_for(
        lambda: job_state(job.pk).step > 0 and checkpoints("**/*.ckpt"),
        timeout=90,
        message="the job to run and write a checkpoint",
    )
    kill_worker(first)
    killed_at_step = job_state(job.pk).step

    processes.append(start_worker(env, "rescuer", log_path=tmp_path / "rescuer.log"))
    final = wait_for(
        lambda: (j := job_state(job.pk)).status in FINISHED and j, timeout=150, message="the job"
    )
    assert_one_model_per_job_and_no_orphans(media_root, [final])
    assert final.attempts == 2
    kinds = list(final.events.values_list("kind", flat=True))
    assert "requeued" in kinds and "retried" in kinds
    resumed = final.events.get(kind="retried")
    assert resumed.data["step"] >= 1 and killed_at_step >= 1


def test_redis_restart_loses_no_job(fast_recovery, media_root, tmp_path, processes):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port, tmp_path / "redis", tmp_path / "redis.log")
    try:
        env = subprocess_env(media_root, REDIS_URL=url, **FAST_RECOVERY)
        with broker(url):
            processes.append(start_beat(env, tmp_path / "beat-schedule", tmp_path / "beat.log"))
            processes.append(start_worker(env, "steady", log_path=tmp_path / "worker.log"))
            jobs = [create_job(editor_with_pairs(f"user{i}", 2, start=10 * i), seconds=3) for i in range(3)]
            wait_for(lambda: job_state(jobs[0].pk).status == "running", timeout=60, message="a running job")

            redis.terminate()
            redis.wait(timeout=10)
            time.sleep(3)
            redis = start_redis(port, tmp_path / "redis", tmp_path / "redis.log")

            finished = [
                wait_for(
                    lambda j=job: (s := job_state(j.pk)).status in FINISHED and s,
                    timeout=180,
                    message=f"job {job.pk}",
                )
                for job in jobs
            ]
        assert_one_model_per_job_and_no_orphans(media_root, finished)
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def test_cancel_running_job_takes_effect_within_seconds(fast_recovery, media_root, tmp_path, processes):
    env = subprocess_env(media_root, **FAST_RECOVERY)
    processes.append(start_worker(env, "canceller", log_path=tmp_path / "worker.log"))
    job = create_job(editor_with_pairs("lee", 3), seconds=60)
    wait_for(lambda: job_state(job.pk).step > 0, timeout=60, message="the job to start training")

    asked = time.monotonic()
    cancel_job(job.pk)
    wait_for(
        lambda: job_state(job.pk).status == "cancelled", timeout=10, interval=0.1, message="cancellation"
    )
    assert time.monotonic() - asked < 10
    assert not PersonalModel.objects.exists()
    assert files_under(media_root, "models/**/*") == [] and checkpoints() == []


def test_an_instant_model_longer_than_the_lease_and_the_time_margin_finishes(
    fast_recovery, media_root, tmp_path, processes, settings
):
    # the instant model's searches and fits take longer than this test's lease (about 15 s for 40 pairs on
    # one core, here 8 s); its heartbeat must keep coming through them, or the sweeper gives the job to
    # another worker, whose attempt outlasts the lease again, until the job runs out of attempts. They
    # also take longer than the time limit's margin (here 10 s): the limit must allow for the pairs too.
    settings.JOB_TIME_LIMIT_MARGIN = 10  # read where the job's message is sent, in this process
    env = subprocess_env(media_root, **{**FAST_RECOVERY, "JOB_LEASE_SECONDS": "8"})
    processes.append(start_beat(env, tmp_path / "beat-schedule", tmp_path / "beat.log"))
    # as deployed (docker/compose.yaml): the sweeps run beside the training, on the default queue
    processes.append(start_worker(env, "sweeper", queues="default", log_path=tmp_path / "sweeper.log"))
    processes.append(start_worker(env, "patient", queues="training", log_path=tmp_path / "worker.log"))
    job = create_job(editor_with_pairs("ana", 40), seconds=0, seed=3)
    final = wait_for(
        lambda: (j := job_state(job.pk)).status in FINISHED and j, timeout=240, message="the job"
    )
    assert_one_model_per_job_and_no_orphans(media_root, [final])
    assert final.attempts == 1
    assert "requeued" not in final.events.values_list("kind", flat=True)


def test_fifty_editors_fifty_jobs_two_workers(fast_recovery, media_root, tmp_path, processes, settings):
    env = subprocess_env(media_root, **FAST_RECOVERY)
    processes.append(start_worker(env, "w1", queues="training", log_path=tmp_path / "w1.log"))
    processes.append(start_worker(env, "w2", queues="training", log_path=tmp_path / "w2.log"))
    jobs = [
        create_job(editor_with_pairs(f"editor{i:02d}", 2, start=2 * i), seconds=1, seed=i) for i in range(50)
    ]
    finished = [
        wait_for(
            lambda j=job: (s := job_state(j.pk)).status in FINISHED and s,
            timeout=600,
            message=f"job {job.pk}",
        )
        for job in jobs
    ]
    assert_one_model_per_job_and_no_orphans(media_root, finished)
    assert PersonalModel.objects.count() == 50
    assert sorted(PersonalModel.objects.values_list("owner__username", flat=True)) == sorted(
        f"editor{i:02d}" for i in range(50)
    )
