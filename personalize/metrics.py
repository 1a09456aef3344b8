"""/metrics in Prometheus text format.

Counts that every process must agree on (jobs by status, job durations, models, queue depth) are read from
the database and the broker at scrape time, so any web process answers the same. Prediction latency is
observed in the process that served the request; with several gunicorn workers set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) so that every process's observations are summed.
"""

import os

from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from personalize.models import PersonalModel, Prediction, TrainingJob, succeeded_durations

PREDICTION_LATENCY = Histogram(
    "personalize_prediction_latency_seconds",
    "Time to answer POST /api/v1/predict, decode included.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5),
)
JOB_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 3600)
QUEUES = ("training", "default")


def queue_depths() -> dict[str, int]:
    """Messages waiting in each Celery queue (a Redis list per queue; priorities add suffixed lists)."""
    from workers import app

    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        return {
            queue: sum(client.llen(key) for key in [queue, *client.keys(f"{queue}\x06\x16*")])
            for queue in QUEUES
        }


class ServiceCollector:
    def collect(self):
        by_status = dict(TrainingJob.objects.values_list("status").annotate(n=Count("id")))
        jobs = GaugeMetricFamily("personalize_jobs", "Training jobs by status.", labels=["status"])
        for status in TrainingJob.Status.values:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs

        durations = succeeded_durations(TrainingJob.objects.all())
        buckets = [(str(b), sum(d <= b for d in durations)) for b in JOB_DURATION_BUCKETS]
        histogram = HistogramMetricFamily(
            "personalize_job_duration_seconds", "Wall time of succeeded training jobs, start to publish."
        )
        histogram.add_metric([], buckets + [("+Inf", len(durations))], sum(durations))
        yield histogram

        models = GaugeMetricFamily("personalize_models", "Published personal models.")
        models.add_metric([], PersonalModel.objects.count())
        yield models

        served = CounterMetricFamily(
            "personalize_predictions", "Predictions served, by model kind.", labels=["kind"]
        )
        for kind, count in Prediction.objects.values_list("model_kind").annotate(n=Count("id")):
            served.add_metric([kind], count)
        yield served

        try:
            depths = queue_depths()
        except Exception:
            return  # broker down: the other metrics still matter; /healthz says what is wrong
        depth = GaugeMetricFamily(
            "personalize_queue_depth", "Messages waiting in each queue.", labels=["queue"]
        )
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield depth


def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessHistograms())
    registry.register(ServiceCollector())
    return registry


class _ProcessHistograms:
    def collect(self):
        yield from PREDICTION_LATENCY.collect()


def metrics_view(request):
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
