"""The training pipeline around rlcore: enqueue-to-start latency, jobs per minute, overhead per job.

    .venv/bin/python bench/bench_workers.py [--jobs 20] [--workers 2] [--seconds 1]

Uses a scratch SQLite database and media root, the Redis at $REDIS_URL (else one it starts), real
`celery -A workers worker` processes on the `training` queue, and N editors with 3 pairs each, one job each
with a tiny training budget. Reports, from the job rows:
  * enqueue-to-start: started_at - enqueued_at (broker hop, worker pick-up, lease);
  * throughput: jobs finished per minute, first enqueue to last finish;
  * overhead: job wall time (started -> published) minus the time spent inside rlcore's finetune.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=1, help="training budget per job")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    os.environ.update(
        VAR_DIR=str(scratch),
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{scratch / 'db.sqlite3'}",
        MEDIA_ROOT=str(scratch / "media"),
        MIN_PAIRS_FOR_TRAINING="3",
        DJANGO_SETTINGS_MODULE="personalize.settings",
    )
    from personalize.devstack import free_port, redis_answers, start_redis, worker_command

    redis = None
    if not redis_answers(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")):
        port = free_port()
        redis = start_redis(port, scratch / "redis", scratch / "redis.log")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from personalize.accounts import create_or_get_editor
    from personalize.jobs import create_job
    from personalize.models import TrainingJob
    from personalize.pairs import upload_pair
    from tests.photos import pair_bytes

    call_command("migrate", verbosity=0)
    editors = []
    for i in range(args.jobs):
        user, _ = create_or_get_editor(f"bench{i:03d}")
        for k in range(3):
            before, after = pair_bytes(3 * i + k)
            upload_pair(user, SimpleUploadedFile("b.jpg", before), SimpleUploadedFile("a.jpg", after))
        editors.append(user)

    workers = [
        subprocess.Popen(
            worker_command("training", f"bench{n}@%h", "--loglevel", "WARNING"),
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(args.workers)
    ]
    try:
        from workers import app

        deadline = time.monotonic() + 90
        while len(app.control.ping(timeout=1) or []) < args.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not come up")
        jobs = [create_job(user, seconds=args.seconds) for user in editors]
        ids = [job.pk for job in jobs]
        deadline = time.monotonic() + 60 + 30 * args.jobs * args.seconds
        while TrainingJob.objects.filter(pk__in=ids, status__in=TrainingJob.ACTIVE).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs did not finish in time")
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        if redis:
            redis.terminate()

    done = list(TrainingJob.objects.filter(pk__in=ids))
    succeeded = [job for job in done if job.status == "succeeded"]
    waits = [(job.started_at - job.enqueued_at).total_seconds() for job in succeeded]
    walls = [(job.finished_at - job.started_at).total_seconds() for job in succeeded]
    overheads = [wall - (job.training_seconds or 0) for wall, job in zip(walls, succeeded, strict=True)]
    span = (max(j.finished_at for j in succeeded) - min(j.enqueued_at for j in succeeded)).total_seconds()
    # The first jobs' waits measure pick-up by an idle worker; later ones include queueing behind others.
    first = sorted(succeeded, key=lambda j: j.enqueued_at)[: args.workers]
    idle_waits = [(j.started_at - j.enqueued_at).total_seconds() for j in first]
    print(
        f"{len(succeeded)}/{len(done)} jobs succeeded; {args.workers} workers; budget {args.seconds} s per job"
    )
    print(
        f"enqueue-to-start, idle worker: {statistics.fmean(idle_waits) * 1000:.0f} ms (mean of first {len(first)})"
    )
    print(
        f"enqueue-to-start, all jobs (includes queueing): p50 {percentile(waits, 0.5):.1f} s, "
        f"max {max(waits):.1f} s"
    )
    print(f"throughput: {len(succeeded) / span * 60:.1f} jobs/minute")
    print(
        f"job wall time: mean {statistics.fmean(walls):.2f} s; inside rlcore: "
        f"mean {statistics.fmean(j.training_seconds or 0 for j in succeeded):.2f} s"
    )
    print(
        f"pipeline overhead per job (wall - training): mean {statistics.fmean(overheads):.2f} s, "
        f"p90 {percentile(overheads, 0.9):.2f} s"
    )
    print("command: .venv/bin/python bench/bench_workers.py " + " ".join(sys.argv[1:]))
    return 0 if len(succeeded) == len(done) else 1


if __name__ == "__main__":
    sys.exit(main())
