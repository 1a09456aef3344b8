"""Admin monitoring: the queue dashboard, the job page's training curve, Prometheus metrics, admin actions."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from personalize.accounts import create_or_get_editor
from personalize.jobs import create_job
from personalize.models import TrainingJob
from personalize.pairs import upload_pair
from tests.photos import pair_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin-password-123")
    client.force_login(admin)
    return client


@pytest.fixture
def job(settings):
    settings.MIN_PAIRS_FOR_TRAINING = 2
    user, _ = create_or_get_editor("hana")
    for i in range(2):
        before, after = pair_bytes(60 + i)
        upload_pair(
            user, SimpleUploadedFile("b.jpg", before), SimpleUploadedFile("a.jpg", after), name=f"p{i}"
        )
    return create_job(user, seconds=5)


def test_dashboard_is_staff_only(client):
    response = client.get("/admin/queues/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    editor, _ = create_or_get_editor("ivan", password="ivan-password-123")
    client.force_login(editor)
    assert client.get("/admin/queues/").status_code == 302


def test_dashboard_shows_queues_workers_jobs_and_failures(staff_client, job):
    TrainingJob.objects.filter(pk=job.pk).update(status="failed", error="pair 3: unreadable thumbnails")
    page = staff_client.get("/admin/queues/").content.decode()
    for text in (
        "Queues",
        "training",
        "default",
        "Workers online",
        "Jobs by status",
        "Last 24 hours",
        "pair 3: unreadable thumbnails",
    ):
        assert text in page


def test_dashboard_counts_finished_jobs_in_words(staff_client, job):
    TrainingJob.objects.filter(pk=job.pk).update(
        status="succeeded", started_at=timezone.now() - timedelta(seconds=4), finished_at=timezone.now()
    )
    page = staff_client.get("/admin/queues/").content.decode()
    assert "Finished: succeeded: 1;" in page
    assert "{&#x27;" not in page  # no Python dict


def test_job_admin_page_plots_the_training_curve(staff_client, job):
    TrainingJob.objects.filter(pk=job.pk).update(curve=[[10, 6.5], [20, 4.0], [30, 3.1]])
    page = staff_client.get(f"/admin/personalize/trainingjob/{job.pk}/change/").content.decode()
    assert 'src="data:image/png;base64,' in page and "validation ΔE00 by step" in page


def test_pair_admin_shows_thumbnails(staff_client, job):
    page = staff_client.get("/admin/personalize/pair/").content.decode()
    assert page.count('src="data:image/png;base64,') >= 4


def test_admin_cancel_and_retry_actions(staff_client, job):
    staff_client.post(
        "/admin/personalize/trainingjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert job.status == "cancelled"
    staff_client.post(
        "/admin/personalize/trainingjob/", {"action": "retry_jobs", "_selected_action": [job.pk]}
    )
    retried = TrainingJob.objects.exclude(pk=job.pk).get()
    assert retried.status == "queued" and retried.seconds == job.seconds and retried.owner == job.owner


def test_metrics_in_prometheus_format(client, job):
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    jobs = {s.labels["status"]: s.value for s in families["personalize_jobs"].samples}
    assert jobs["queued"] == 1 and jobs["succeeded"] == 0
    assert {
        "personalize_job_duration_seconds",
        "personalize_prediction_latency_seconds",
        "personalize_models",
        "personalize_queue_depth",
    } <= set(families)
    depths = {s.labels["queue"] for s in families["personalize_queue_depth"].samples}
    assert depths == {"training", "default"}
