"""Admin: pairs with their thumbnails, bulk imports, jobs with a training curve and cancel/retry actions, models."""

import base64
import io

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from personalize import jobs
from personalize.models import (
    EditorProfile,
    JobEvent,
    Pair,
    PairImport,
    PairTag,
    PersonalModel,
    Prediction,
    TrainingJob,
)


def inline_png(file_field, size: int = 96) -> str:
    """A stored thumbnail as an <img> with a data URI: works wherever media files are not web-served."""
    if not file_field:
        return "–"
    try:
        with file_field.open("rb") as handle:
            data = base64.b64encode(handle.read()).decode()
    except OSError:
        return "missing"
    return format_html('<img src="data:image/png;base64,{}" width="{}" height="{}">', data, size, size)


class PairTagInline(admin.TabularInline):
    model = PairTag
    extra = 0


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "name", "before_thumbnail", "after_thumbnail", "mask_source", "created_at"]
    list_filter = ["mask_source", "owner"]
    search_fields = ["name", "owner__username", "content_hash"]
    readonly_fields = ["before_thumbnail", "after_thumbnail", "mask_thumbnail", "content_hash", "uid"]
    inlines = [PairTagInline]

    @admin.display(description="before")
    def before_thumbnail(self, pair):
        return inline_png(pair.before_thumb)

    @admin.display(description="after")
    def after_thumbnail(self, pair):
        return inline_png(pair.after_thumb)

    @admin.display(description="mask")
    def mask_thumbnail(self, pair):
        return inline_png(pair.mask_thumb)


@admin.register(PairImport)
class PairImportAdmin(admin.ModelAdmin):
    """Read-only: an import's state changes only through personalize/imports.py."""

    list_display = ["id", "owner", "status", "file_name", "done", "total", "attempts", "created_at"]
    list_filter = ["status"]
    search_fields = ["file_name", "owner__username"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "kind", "message", "data"]

    def has_add_permission(self, request, obj=None):
        return False


def training_curve_png(curve: list) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3), dpi=100)
    axes = figure.add_subplot()
    steps, values = zip(*curve, strict=True)
    axes.plot(steps, values, marker="o", markersize=3)
    axes.set_xlabel("training step")
    axes.set_ylabel("validation mean ΔE00")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "status",
        "progress",
        "val_delta_e",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    search_fields = ["owner__username", "error"]
    readonly_fields = ["training_curve", "curve", "metrics", "lease_owner", "heartbeat_at", "model"]
    inlines = [JobEventInline]
    actions = ["cancel_jobs", "retry_jobs"]

    @admin.display(description="training curve")
    def training_curve(self, job):
        if len(job.curve) < 1:
            return "no validation yet"
        return format_html(
            '<img src="data:image/png;base64,{}" alt="validation ΔE00 by step">',
            training_curve_png(job.curve),
        )

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        for job in queryset.filter(status__in=TrainingJob.ACTIVE):
            jobs.cancel_job(job.pk)
        self.message_user(request, "Cancellation requested.", messages.SUCCESS)

    @admin.action(description="Retry selected jobs (failed or cancelled)")
    def retry_jobs(self, request, queryset):
        for job in queryset:
            try:
                new = jobs.retry_job(job.pk)
                self.message_user(request, f"job {job.pk} retried as job {new.pk}", messages.SUCCESS)
            except (jobs.JobFinished, jobs.ActiveJobExists, jobs.NotEnoughPairs) as exc:
                self.message_user(request, f"job {job.pk}: {exc}", messages.WARNING)


@admin.register(PersonalModel)
class PersonalModelAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "version", "size_bytes", "validation", "created_at"]
    list_filter = ["owner"]
    readonly_fields = ["metrics_table"]

    @admin.display(description="validation ΔE00 (none / base / personal)")
    def validation(self, model):
        m = model.metrics
        return "{} / {} / {}".format(
            *(
                f"{m[k]:.2f}" if isinstance(m.get(k), int | float) else "–"
                for k in ("val_delta_e_no_edit", "val_delta_e_base", "val_delta_e_personal")
            )
        )

    @admin.display(description="metrics")
    def metrics_table(self, model):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", sorted(model.metrics.items()))
        return format_html("<table>{}</table>", rows)


@admin.register(EditorProfile)
class EditorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "active_model"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "model_kind", "model", "latency_ms", "created_at"]
    list_filter = ["model_kind"]
