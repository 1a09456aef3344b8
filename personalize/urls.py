from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from personalize.dashboard import dashboard_view
from personalize.health import health_report
from personalize.metrics import metrics_view


def healthz(request):
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("personalize.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/queues/", dashboard_view, name="queue-dashboard"),
    path("admin/", admin.site.urls),
    path("", include("personalize.web_urls")),  # the editors' web app (docs/webapp.md)
]
