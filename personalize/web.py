"""The editors' web app: server-rendered pages over the same actions as the API (docs/webapp.md).

Views here only scope to the signed-in editor, call the functions the API views call (the `do_*` actions
and owner-scoped querysets in personalize/views.py, and the services under them) and render a template or
a small JSON answer for the page's own JavaScript. Nothing is decided here that the API decides
differently: a refused upload shows the API's reason, a refused job the API's message.

Security as for the API: every POST is checked by Django's CSRF middleware (no view is exempt), objects
are looked up through the editor's own querysets so that another editor's id answers 404, and uploads,
predictions and sign-in attempts count against the API's throttles (same scopes, same cache keys).
"""

from __future__ import annotations

import io
import json
import logging
import math
from functools import wraps
from pathlib import PurePosixPath
from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import APIException, ValidationError

from personalize import inference, jobs, pairs, results, serializers
from personalize.images import UploadError
from personalize.models import PairTag
from personalize.throttles import ScopedThrottle
from personalize.views import (
    active_model_id,
    do_activate_model,
    do_cancel_job,
    do_create_job,
    do_predict,
    do_render,
    do_start_import,
    do_upload_pair,
    own_imports,
    own_jobs,
    own_models,
    own_pairs,
)
from rlcore.agent import instant_seconds
from rlcore.editor import ADJUSTMENTS
from rlcore.xmp import to_xmp

log = logging.getLogger(__name__)

PAIRS_PER_PAGE = 24
RESULTS_PER_PAGE = 12
# "Face weighting on" weights faces twice as much as the rest of the photo (rlcore.faces' default).
FACE_WEIGHT_ON = 1.0


# --- helpers ----------------------------------------------------------------------------------------------


def reasons(detail) -> list[str]:
    """A DRF ValidationError's detail as sentences: "before: not a readable image ..."."""
    if isinstance(detail, dict):
        out = []
        for field, value in detail.items():
            for reason in value if isinstance(value, list) else [value]:
                out.append(str(reason) if field in ("detail", "non_field_errors") else f"{field}: {reason}")
        return out
    if isinstance(detail, list):
        return [str(reason) for reason in detail]
    return [str(detail)]


def sentence(text: str) -> str:
    """A service's message ("training needs at least ...") as a sentence for a page."""
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}{'' if text.endswith('.') else '.'}"


def throttled(request, scope: str) -> JsonResponse | None:
    """A 429 answer when the editor is over the API's rate for `scope` (shared counters), else None."""
    throttle = ScopedThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope=scope)):
        return None
    wait = math.ceil(throttle.wait() or 1)
    return JsonResponse({"errors": [f"too many requests; try again in {wait} s"]}, status=429)


def form_data(request):
    """The POST's fields and files together, as DRF's request.data gives them to the serializers."""
    data = request.POST.copy()
    data.update(request.FILES)
    return data


def page(view):
    """A page for signed-in editors; anyone else is sent to sign in and brought back."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("web:signin"))
        return view(request, *args, **kwargs)

    return wrapped


def endpoint(view):
    """A JSON or file answer for the pages' scripts: 401 in words when the session has ended."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"errors": ["you are signed out; sign in again"]}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


def action(scope: str):
    """For an endpoint that calls one of the API's actions: the API's throttle for `scope` (429 in words),
    and the action's refusal (a ValidationError: 400) answered as {"errors": [reasons]} with the status the
    API gives it."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            refused = throttled(request, scope)
            if refused is not None:
                return refused
            try:
                return view(request, *args, **kwargs)
            except APIException as exc:  # ValidationError (400) and the services' other refusals
                return JsonResponse({"errors": reasons(exc.detail)}, status=exc.status_code)

        return wrapped

    return decorate


def back(request, default: str):
    """Redirect to the form's `next` (a path on this site only), else to `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def jpeg_response(image, max_age: int = 0) -> HttpResponse:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    response = HttpResponse(buffer.getvalue(), content_type="image/jpeg")
    # A pair's photos never change (a new upload is a new pair), so its previews can be kept a day.
    response["Cache-Control"] = f"private, max-age={max_age}" if max_age else "private, no-store"
    return response


def preview_response(pair, which: str, model=None) -> HttpResponse:
    """One of a pair's larger images (results.preview) as JPEG, kept a day: a pair's photos and a model's
    edit of them never change. 410 in words when the stored photo can no longer be read, 404 in words when
    a file it needs is missing from storage (deleted out of band, or a storage outage answering so)."""
    try:
        image = results.preview(pair, which, model)
    except UploadError as exc:
        return JsonResponse({"errors": [exc.reason]}, status=410)
    except (FileNotFoundError, inference.ModelFileMissing) as exc:
        cause = exc.__cause__ or exc  # the missing file's name, for the log only
        log.warning("pair %s: a file of its %s image is missing from storage (%s)", pair.pk, which, cause)
        return JsonResponse({"errors": ["a file of this image is missing from storage"]}, status=404)
    return jpeg_response(image, max_age=86400)


# --- signing in and out -----------------------------------------------------------------------------------


def root(request):
    return redirect("web:pairs" if request.user.is_authenticated else "web:signin")


class SignInView(auth_views.LoginView):
    """Django's session sign-in for the editors' accounts, counted against the API's login throttle."""

    template_name = "personalize/web/signin.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        refused = throttled(request, "auth")
        if refused is not None:
            form = self.get_form()
            form.errors.clear()
            context = self.get_context_data(form=form, throttled=json.loads(refused.content)["errors"][0])
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def get_default_redirect_url(self):
        return reverse("web:pairs")


class SignOutView(auth_views.LogoutView):
    next_page = "web:signin"


# --- pairs ------------------------------------------------------------------------------------------------


@page
@require_GET
def pairs_page(request):
    tag = request.GET.get("tag", "").strip()
    queryset = own_pairs(request.user, tag or None)
    listing = Paginator(queryset, PAIRS_PER_PAGE).get_page(request.GET.get("page"))
    tags = (
        PairTag.objects.filter(pair__owner=request.user)
        .values_list("name", flat=True)
        .distinct()
        .order_by("name")
    )
    return render(
        request,
        "personalize/web/pairs.html",
        {
            "listing": listing,
            "tag": tag,
            "tags": list(tags),
            "total": own_pairs(request.user).count(),
            "min_pairs": settings.MIN_PAIRS_FOR_TRAINING,
            "max_upload_mb": settings.MAX_UPLOAD_BYTES // (1024 * 1024),
        },
    )


@page
@require_POST
def pair_delete(request, pk: int):
    pair = get_object_or_404(own_pairs(request.user), pk=pk)
    name = str(pair)
    pairs.delete_pair(pair)  # what the API's DELETE /api/v1/pairs/<id> calls
    messages.success(request, f"Deleted {name}.")
    return back(request, reverse("web:pairs"))


@endpoint
@require_GET
def pair_image(request, pk: int, which: str):
    if which not in ("before", "after"):
        raise Http404("no such image")
    return preview_response(get_object_or_404(own_pairs(request.user), pk=pk), which)


@endpoint
@require_POST
def pairs_match(request):
    """Which of a dropped folder's files make pairs, by name, as a bulk zip's are matched (no upload yet)."""
    try:
        names = json.loads(request.body or b"{}").get("names")
    except (ValueError, AttributeError):  # not JSON (or not UTF-8), or not an object
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return JsonResponse({"errors": ['expected JSON {"names": [file paths]}']}, status=400)
    try:
        matched, skipped = pairs.match_by_name(names)
    except UploadError as exc:
        return JsonResponse({"errors": [exc.reason]}, status=400)
    return JsonResponse(
        {
            "pairs": [
                {"name": PurePosixPath(before).stem, "before": before, "after": after}
                for _, before, after in matched
            ],
            "skipped": skipped,
        }
    )


@endpoint
@require_POST
@action("uploads")
def pair_upload(request):
    """One pair, as POST /api/v1/pairs: {"pair": {...}, "created": bool} or {"errors": [reasons]}."""
    pair, created = do_upload_pair(request.user, form_data(request))
    return JsonResponse(
        {"pair": serializers.PairSerializer(pair).data, "created": created}, status=201 if created else 200
    )


@endpoint
@require_POST
@action("uploads")
def pair_upload_zip(request):
    """A zip, as POST /api/v1/pairs/bulk: 202 with the import (PairImportSerializer) and the URL this page
    polls (`poll`) while a worker stores the pairs; or {"errors": [reasons]} when the zip is refused."""
    row = do_start_import(request.user, form_data(request))
    return JsonResponse(import_state(row), status=202)


def import_state(row) -> dict:
    return {**serializers.PairImportSerializer(row).data, "poll": reverse("web:pair-import", args=[row.pk])}


@endpoint
@require_GET
def pair_import_json(request, pk: int):
    """The import's progress and outcome, as GET /api/v1/pairs/imports/<id>."""
    return JsonResponse(import_state(get_object_or_404(own_imports(request.user), pk=pk)))


# --- training ---------------------------------------------------------------------------------------------


@page
@require_GET
def training_page(request):
    available = own_pairs(request.user).count()
    return render(
        request,
        "personalize/web/training.html",
        {
            "active": jobs.active_job(request.user),
            "recent": own_jobs(request.user)[:20],
            "available": available,
            "min_pairs": settings.MIN_PAIRS_FOR_TRAINING,
            "missing": max(0, settings.MIN_PAIRS_FOR_TRAINING - available),
            "default_seconds": settings.TRAINING_DEFAULT_SECONDS,
            "max_seconds": settings.TRAINING_MAX_SECONDS,
            "instant_seconds": math.ceil(instant_seconds(available)) if available >= 2 else None,
        },
    )


@page
@require_POST
def training_start(request):
    data = {
        "seconds": request.POST.get("seconds", ""),
        "face_weight": FACE_WEIGHT_ON if request.POST.get("faces") else 0.0,
    }
    if data["seconds"] == "":
        del data["seconds"]  # the API's default budget
    try:
        job = do_create_job(request.user, data)
    except ValidationError as exc:
        for reason in reasons(exc.detail):
            messages.error(request, reason.replace("seconds:", "Budget:", 1))
    except (jobs.NotEnoughPairs, jobs.ActiveJobExists) as exc:
        messages.error(request, sentence(str(exc)))
        if isinstance(exc, jobs.ActiveJobExists):
            return redirect("web:job", pk=exc.job_id)
    else:
        return redirect("web:job", pk=job.pk)
    return redirect("web:training")


@page
@require_GET
def job_page(request, pk: int):
    job = get_object_or_404(own_jobs(request.user), pk=pk)
    return render(request, "personalize/web/job.html", {"job": job, "state": job_state(job)})


def job_state(job) -> dict:
    """The job as the API shows it (JobSerializer), plus its validation curve and its events."""
    return {
        **serializers.JobSerializer(job).data,
        "active": job.is_active,
        "curve": job.curve,
        "events": serializers.JobEventSerializer(job.events.all(), many=True).data,
        "model_url": reverse("web:models") + f"#model-{job.model_id}" if job.model_id else None,
    }


@endpoint
@require_GET
def job_json(request, pk: int):
    job = get_object_or_404(own_jobs(request.user), pk=pk)
    return JsonResponse(job_state(job))


@page
@require_POST
def job_cancel(request, pk: int):
    try:
        job = do_cancel_job(request.user, pk)
    except jobs.JobFinished as exc:
        messages.error(request, sentence(f"nothing to cancel: {exc}"))
    else:
        if job.status == job.Status.CANCELLED:
            messages.success(request, "Cancelled before it started.")
        else:
            messages.success(request, "Cancellation requested; the worker stops within seconds.")
    return redirect("web:job", pk=pk)


# --- models -----------------------------------------------------------------------------------------------


@page
@require_GET
def models_page(request):
    models = list(own_models(request.user))
    active_id = active_model_id(request.user)
    active_version = next((model.version for model in models if model.pk == active_id), None)
    return render(
        request,
        "personalize/web/models.html",
        {"models": models, "active_id": active_id, "active_version": active_version},
    )


@page
@require_POST
def model_activate(request, pk: int):
    model = do_activate_model(request.user, pk)
    messages.success(request, f"Version {model.version} now answers your predictions.")
    return redirect("web:models")


# --- results and trying a photo ---------------------------------------------------------------------------


@page
@require_GET
def results_page(request):
    models = own_models(request.user)
    chosen = request.GET.get("model")
    if chosen:
        if not chosen.isdigit():
            raise Http404("no such model among yours")
        model = get_object_or_404(models, pk=int(chosen))
    else:
        model = models.filter(pk=active_model_id(request.user)).first()
    worst_first = request.GET.get("order") == "worst"
    try:
        report = results.results_for(model) if model is not None else None
    except (FileNotFoundError, inference.ModelFileMissing) as exc:  # deleted out of band
        cause = exc.__cause__ or exc  # the missing file's name, for the log only
        log.warning("model %s: a file its results need is missing from storage (%s)", model.pk, cause)
        raise Http404("a file of this model or of its pairs is missing from storage") from exc
    rows = []
    if report is not None:
        rows = list(reversed(report.pairs)) if worst_first else report.pairs
    # Each row is three rendered images: a page of them at a time, however many pairs were held out.
    listing = Paginator(rows, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "personalize/web/results.html",
        {
            "model": model,
            "report": report,
            "rows": listing.object_list,
            "listing": listing,
            "shown": len(rows),
            "worst_first": worst_first,
            "models": models,
            "active_id": active_model_id(request.user),
        },
    )


@endpoint
@require_GET
def result_image(request, model_pk: int, pk: int, which: str):
    if which not in results.PREVIEWS:
        raise Http404("no such image")
    model = get_object_or_404(own_models(request.user), pk=model_pk)
    return preview_response(get_object_or_404(own_pairs(request.user), pk=pk), which, model)


@page
@require_GET
def try_page(request):
    return render(
        request,
        "personalize/web/try.html",
        {"adjustments": ADJUSTMENTS, "max_upload_mb": settings.MAX_UPLOAD_BYTES // (1024 * 1024)},
    )


@endpoint
@require_POST
@action("predictions")
def try_predict(request):
    """The sliders for the photo, as POST /api/v1/predict: {"adjustments", "model"}."""
    adjustments, _, served = do_predict(request.user, form_data(request))
    return JsonResponse({"adjustments": adjustments, "model": served.describe()})


@endpoint
@require_POST
@action("predictions")
def try_render(request):
    """The photo edited, as POST /api/v1/render: a JPEG, its sliders in the X-Adjustments header."""
    rendered, adjustments = do_render(request.user, form_data(request))
    response = HttpResponse(rendered, content_type="image/jpeg")
    response["X-Adjustments"] = json.dumps(adjustments)
    response["Cache-Control"] = "private, no-store"
    return response


@endpoint
@require_POST
@action("predictions")
def try_xmp(request):
    """The XMP sidecar for the photo at the chosen strength, as POST /api/v1/predict with format=xmp."""
    data = form_data(request)
    data["format"] = "xmp"
    adjustments, _, _ = do_predict(request.user, data)
    response = HttpResponse(to_xmp(adjustments), content_type="application/rdf+xml; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response
