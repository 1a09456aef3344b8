from django.contrib import admin
from django.http import JsonResponse
from django.urls import path

from personalize.health import health_report


def healthz(request):
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
