"""/api/v1/ routes. Paths answer without a trailing slash, as client apps call them; one is accepted too."""

from django.urls import path

from personalize import views


def route(pattern: str, view, name: str) -> list:
    """The path as written, plus the same with a trailing slash (left out of the OpenAPI schema)."""
    return [path(pattern, view.as_view(), name=name), path(f"{pattern}/", view.as_view())]


urlpatterns = [
    *route("auth/token", views.AuthTokenView, "auth-token"),
    *route("pairs", views.PairListView, "pair-list"),
    *route("pairs/bulk", views.PairBulkView, "pair-bulk"),
    *route("pairs/imports", views.PairImportListView, "pair-import-list"),
    *route("pairs/imports/<int:pk>", views.PairImportDetailView, "pair-import-detail"),
    *route("pairs/<int:pk>", views.PairDetailView, "pair-detail"),
    *route("jobs", views.JobListView, "job-list"),
    *route("jobs/<int:pk>", views.JobDetailView, "job-detail"),
    *route("jobs/<int:pk>/cancel", views.JobCancelView, "job-cancel"),
    *route("jobs/<int:pk>/events", views.JobEventsView, "job-events"),
    *route("models", views.ModelListView, "model-list"),
    *route("models/<int:pk>", views.ModelDetailView, "model-detail"),
    *route("models/<int:pk>/activate", views.ModelActivateView, "model-activate"),
    *route("models/<int:pk>/download", views.ModelDownloadView, "model-download"),
    *route("predict", views.PredictView, "predict"),
    *route("predict/batch", views.PredictBatchView, "predict-batch"),
    *route("render", views.RenderView, "render"),
]


def drop_trailing_slash_duplicates(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: document each API path once, as clients should call it."""
    return [e for e in endpoints if not (e[0].startswith("/api/v1/") and e[0].endswith("/"))]
