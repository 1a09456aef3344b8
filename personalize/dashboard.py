"""The staff-only queue dashboard: broker queues, workers and their jobs, job statistics, recent failures."""

import statistics
from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.shortcuts import render
from django.utils import timezone

from personalize.metrics import queue_depths
from personalize.models import TrainingJob, succeeded_durations


def workers_and_tasks(timeout: float = 1.0) -> tuple[list[dict], str]:
    from workers import app

    try:
        inspect = app.control.inspect(timeout=timeout)
        active = inspect.active() or {}
        queues = inspect.active_queues() or {}
    except Exception as exc:
        return [], f"{type(exc).__name__}: {exc}"
    workers = []
    for name in sorted(set(active) | set(queues)):
        tasks = active.get(name, [])
        workers.append(
            {
                "name": name,
                "queues": ", ".join(q["name"] for q in queues.get(name, [])),
                "tasks": [{"name": t.get("name"), "args": t.get("args"), "id": t.get("id")} for t in tasks],
            }
        )
    return workers, ""


def job_statistics(since) -> dict:
    recent = TrainingJob.objects.filter(finished_at__gte=since)
    durations = sorted(succeeded_durations(recent))
    finished = dict(recent.values_list("status").annotate(n=Count("id")))
    return {
        "finished": finished,
        "succeeded": finished.get("succeeded", 0),
        "per_hour": round(sum(finished.values()) / 24, 2),
        "duration_p50": round(statistics.median(durations), 1) if durations else None,
        "duration_p95": round(durations[min(len(durations) - 1, int(0.95 * len(durations)))], 1)
        if durations
        else None,
        "duration_mean": round(statistics.fmean(durations), 1) if durations else None,
    }


@staff_member_required
def dashboard_view(request):
    since = timezone.now() - timedelta(hours=24)
    try:
        depths, broker_error = queue_depths(), ""
    except Exception as exc:
        depths, broker_error = {}, f"{type(exc).__name__}: {exc}"
    workers, workers_error = workers_and_tasks()
    context = {
        "title": "Training queues",
        "depths": depths,
        "broker_error": broker_error,
        "workers": workers,
        "workers_error": workers_error,
        "by_status": dict(TrainingJob.objects.values_list("status").annotate(n=Count("id"))),
        "stats": job_statistics(since),
        "failures": TrainingJob.objects.filter(status="failed")
        .select_related("owner")
        .order_by("-finished_at")[:20],
        "running": TrainingJob.objects.filter(status="running").select_related("owner"),
    }
    return render(request, "personalize/dashboard.html", context)
