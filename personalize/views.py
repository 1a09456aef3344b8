"""The HTTP API, /api/v1/. Views are thin: scope to the editor, validate with a serializer, call a service.

Every object lookup goes through the requesting editor's own queryset, so another editor's id answers 404
exactly like an id that does not exist.
"""

import io
import logging
import time

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from personalize import imports, inference, jobs, pairs, serializers
from personalize.images import PREVIEW_MAX_SIDE, UploadError, read_upload
from personalize.models import EditorProfile, JobEvent, Pair, PairImport, PersonalModel, TrainingJob
from personalize.models_ops import activate_model, log_prediction, log_predictions
from personalize.throttles import PhotoThrottle, ScopedThrottle
from personalize.uploads import SinglePhotoMultiPartParser
from rlcore.imageio import THUMB_SIZE, edit_file
from rlcore.xmp import to_xmp

log = logging.getLogger(__name__)

NOT_FOUND = OpenApiResponse(serializers.ErrorSerializer, description="no such object among yours")
BAD_REQUEST = OpenApiResponse(description="validation errors: {field: [reason]} or {detail: reason}")


def upload_error(exc: UploadError) -> ValidationError:
    return ValidationError({exc.field: [exc.reason]})


# --- the editor's own objects, and the actions both the API and the web app (personalize/web.py) call ------
# Each action validates with the API's serializer and raises DRF's ValidationError ({field: [reason]}) or
# the service's own exception, so that both front ends refuse the same input with the same words.


def own_pairs(user, tag: str | None = None):
    queryset = Pair.objects.filter(owner=user).prefetch_related("tags")
    return queryset.filter(tags__name=tag) if tag else queryset


def own_imports(user):
    return PairImport.objects.filter(owner=user)


def own_jobs(user):
    return TrainingJob.objects.filter(owner=user)


def own_models(user):
    return PersonalModel.objects.filter(owner=user)


def do_upload_pair(user, data) -> tuple[Pair, bool]:
    """One before/after pair: (pair, created); an identical earlier upload is returned unchanged."""
    form = serializers.PairUploadSerializer(data=data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    try:
        tags = pairs.parse_tags(data.get("tags", ""))
        return pairs.upload_pair(
            user, data["before"], data["after"], data.get("mask"), data.get("name", ""), tags
        )
    except UploadError as exc:
        raise upload_error(exc) from exc


def do_start_import(user, data) -> PairImport:
    """A zip with before/ and after/ folders, checked and stored whole; a worker imports its pairs."""
    form = serializers.BulkUploadSerializer(data=data)
    form.is_valid(raise_exception=True)
    try:
        tags = pairs.parse_tags(form.validated_data.get("tags", ""))
        return imports.create_import(user, form.validated_data["file"], tags)
    except UploadError as exc:
        raise upload_error(exc) from exc


def do_create_job(user, data) -> TrainingJob:
    """Raises ValidationError, jobs.NotEnoughPairs or jobs.ActiveJobExists."""
    form = serializers.JobCreateSerializer(data=data)
    form.is_valid(raise_exception=True)
    return jobs.create_job(user, **form.validated_data)


def do_cancel_job(user, pk: int) -> TrainingJob:
    """404 for another editor's job; raises jobs.JobFinished for a finished one."""
    job = get_object_or_404(own_jobs(user), pk=pk)
    return jobs.cancel_job(job.pk)


def do_activate_model(user, pk: int) -> PersonalModel:
    model = get_object_or_404(own_models(user), pk=pk)
    activate_model(user, model)
    return model


def do_predict(user, data) -> tuple[dict[str, int], str, inference.ServedModel]:
    """The editor's sliders for one photo, logged: (adjustments, format asked, model that answered)."""
    started = time.perf_counter()
    form = serializers.PredictSerializer(data=data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    try:
        image = read_upload("image", data["image"]).decode(max_side=inference.PREDICTION_SIDE)
    except UploadError as exc:
        raise upload_error(exc) from exc
    adjustments, served = inference.predict(user, image, data["strength"])
    log_prediction(user, served, adjustments, data["strength"], (time.perf_counter() - started) * 1000)
    return adjustments, data["format"], served


def do_render(user, data) -> tuple[bytes, dict[str, int]]:
    """The photo edited as JPEG, with the given sliders (scaled by strength) or the editor's model's."""
    form = serializers.RenderSerializer(data=data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    try:
        photo = read_upload("image", data["image"])
        if "adjustments" in data:
            adjustments = inference.scale(data["adjustments"], data["strength"])
        else:
            thumbnail_source = photo.decode(max_side=inference.PREDICTION_SIDE)
            adjustments, _ = inference.predict(user, thumbnail_source, data["strength"])
        rendered = io.BytesIO()
        edit_file(io.BytesIO(photo.data), rendered, adjustments, max_size=data.get("max_size"), format="JPEG")
    except UploadError as exc:
        raise upload_error(exc) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValidationError({"image": [f"the image data is damaged or incomplete ({exc})"]}) from exc
    return rendered.getvalue(), adjustments


class AuthTokenView(ObtainAuthToken):
    """Exchange a username and password for the editor's API token (`Authorization: Token <key>`)."""

    throttle_classes = [ScopedThrottle]
    throttle_scope = "auth"
    parser_classes = [JSONParser, FormParser, MultiPartParser]


# --- pairs -----------------------------------------------------------------------------------------------


class PairListView(generics.ListCreateAPIView):
    serializer_class = serializers.PairSerializer
    parser_classes = [MultiPartParser]
    throttle_scope = "uploads"

    def get_throttles(self):
        return [ScopedThrottle()] if self.request.method == "POST" else []

    def get_queryset(self):
        queryset = own_pairs(self.request.user, self.request.query_params.get("tag"))
        content_hash = self.request.query_params.get("content_hash")
        if content_hash:
            queryset = queryset.filter(content_hash=content_hash.lower())
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("tag", str, description="only pairs with this tag"),
            OpenApiParameter("content_hash", str, description="sha256 of before bytes + after bytes"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=serializers.PairUploadSerializer,
        responses={
            201: serializers.PairSerializer,
            200: OpenApiResponse(
                serializers.PairSerializer, description="you already have a pair of these exact files: it"
            ),
            400: BAD_REQUEST,
        },
        description="Upload one before/after pair. Thumbnails and the face mask are computed now, once.",
    )
    def post(self, request, *args, **kwargs):
        pair, created = do_upload_pair(request.user, request.data)
        return Response(
            serializers.PairSerializer(pair).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PairDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = serializers.PairSerializer

    def get_queryset(self):
        return own_pairs(self.request.user)

    def perform_destroy(self, instance):
        pairs.delete_pair(instance)


class PairBulkView(APIView):
    parser_classes = [MultiPartParser]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "uploads"

    @extend_schema(
        request=serializers.BulkUploadSerializer,
        responses={202: serializers.PairImportSerializer, 400: BAD_REQUEST},
        description="Upload a zip with before/ and after/ folders; files are matched by name (stem). The zip "
        "is checked and stored now; a worker imports its pairs: follow the answer's `url`.",
    )
    def post(self, request):
        row = do_start_import(request.user, request.data)
        data = serializers.PairImportSerializer(row).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


class PairImportListView(generics.ListAPIView):
    serializer_class = serializers.PairImportSerializer

    def get_queryset(self):
        return own_imports(self.request.user)


class PairImportDetailView(generics.RetrieveAPIView):
    serializer_class = serializers.PairImportSerializer

    def get_queryset(self):
        return own_imports(self.request.user)


# --- training jobs ----------------------------------------------------------------------------------------


class JobListView(generics.ListCreateAPIView):
    serializer_class = serializers.JobSerializer
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_queryset(self):
        return own_jobs(self.request.user)

    @extend_schema(
        request=serializers.JobCreateSerializer,
        responses={
            201: serializers.JobSerializer,
            400: OpenApiResponse(serializers.NotEnoughPairsSerializer, description="too few pairs"),
            409: OpenApiResponse(serializers.ActiveJobSerializer, description="an active job exists"),
        },
        description="Start fine-tuning a personal model on your pairs (optionally only those with `tag`).",
    )
    def post(self, request, *args, **kwargs):
        try:
            job = do_create_job(request.user, request.data)
        except jobs.NotEnoughPairs as exc:
            return Response(
                {"detail": str(exc), "required": exc.required, "available": exc.available},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except jobs.ActiveJobExists as exc:
            return Response({"detail": str(exc), "active_job": exc.job_id}, status=status.HTTP_409_CONFLICT)
        return Response(serializers.JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailView(generics.RetrieveAPIView):
    serializer_class = serializers.JobSerializer

    def get_queryset(self):
        return own_jobs(self.request.user)


class JobCancelView(APIView):
    @extend_schema(
        request=None,
        responses={
            202: serializers.JobSerializer,
            404: NOT_FOUND,
            409: OpenApiResponse(serializers.ErrorSerializer, description="already finished"),
        },
        description="Cancel a queued job at once, or ask a running one to stop (it stops within seconds).",
    )
    def post(self, request, pk):
        try:
            job = do_cancel_job(request.user, pk)
        except jobs.JobFinished as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(serializers.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobEventsView(generics.ListAPIView):
    serializer_class = serializers.JobEventSerializer
    pagination_class = None

    def get_queryset(self):
        job = get_object_or_404(own_jobs(self.request.user), pk=self.kwargs["pk"])
        return JobEvent.objects.filter(job=job)


# --- personal models --------------------------------------------------------------------------------------


def active_model_id(user) -> int | None:
    return EditorProfile.objects.filter(user=user).values_list("active_model_id", flat=True).first()


class EditorModels:
    """The requesting editor's models, each serialized knowing which one is active."""

    serializer_class = serializers.PersonalModelSerializer

    def get_queryset(self):
        return own_models(self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "active_model_id": active_model_id(self.request.user)}


class ModelListView(EditorModels, generics.ListAPIView):
    pass


class ModelDetailView(EditorModels, generics.RetrieveAPIView):
    pass


class ModelActivateView(APIView):
    @extend_schema(request=None, responses={200: serializers.PersonalModelSerializer, 404: NOT_FOUND})
    def post(self, request, pk):
        model = do_activate_model(request.user, pk)
        context = {"request": request, "active_model_id": model.pk}
        return Response(serializers.PersonalModelSerializer(model, context=context).data)


class ModelDownloadView(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: NOT_FOUND})
    def get(self, request, pk):
        model = get_object_or_404(own_models(request.user), pk=pk)
        try:
            handle = default_storage.open(model.file, "rb")
        except FileNotFoundError as exc:  # deleted out of band, or a storage outage answering so
            log.warning("model %s: its file %s is missing from storage (%s)", model.pk, model.file, exc)
            raise NotFound("the model file is missing from storage") from exc
        filename = f"personal-model-{request.user.username}-v{model.version}.pt"
        return FileResponse(
            handle, as_attachment=True, filename=filename, content_type="application/octet-stream"
        )


# --- predictions ------------------------------------------------------------------------------------------


def form_and_query(request) -> dict:
    """Options are accepted as form fields or query parameters (the form wins)."""
    merged = {key: request.query_params.get(key) for key in request.query_params}
    merged.update({key: request.data.get(key) for key in request.data})
    return merged


class PredictView(APIView):
    parser_classes = [SinglePhotoMultiPartParser]  # one pass over the body (personalize/uploads.py)
    throttle_classes = [ScopedThrottle]
    throttle_scope = "predictions"

    @extend_schema(
        request=serializers.PredictSerializer,
        parameters=[
            OpenApiParameter("strength", float, description="0 to 2, scales every slider (default 1)"),
            OpenApiParameter("format", str, enum=["json", "xmp"], description="json (default) or xmp"),
        ],
        responses={
            200: serializers.PredictionSerializer,
            (200, "application/rdf+xml"): OpenApiTypes.STR,
            400: BAD_REQUEST,
        },
        description="The editor's personalized sliders for one photo (active personal model, else the base).",
    )
    def post(self, request):
        adjustments, format, served = do_predict(request.user, form_and_query(request))
        if format == "xmp":
            return HttpResponse(to_xmp(adjustments), content_type="application/rdf+xml; charset=utf-8")
        return Response({"adjustments": adjustments, "model": served.describe()})


class PredictBatchView(APIView):
    """Many photos in one request, as previews the client decoded itself (docs/api.md, "Batches")."""

    parser_classes = [MultiPartParser]
    throttle_scope = "predictions"

    def get_throttles(self):
        return [PhotoThrottle()] if self.request.method == "POST" else []

    def photos_in(self, request) -> int:
        """What PhotoThrottle counts: a batch of N previews uses N predictions of the editor's budget."""
        return min(len(request.FILES.getlist("previews")), inference.BATCH_MAX_PREVIEWS)

    @extend_schema(
        responses={200: serializers.BatchLimitsSerializer},
        description="The model that answers your predictions now, and what a batch may hold.",
    )
    def get(self, request):
        return Response(
            {
                "model": inference.model_for(request.user).describe(),
                "max_previews": inference.BATCH_MAX_PREVIEWS,
                "preview_size": THUMB_SIZE,
                "max_preview_side": PREVIEW_MAX_SIDE,
            }
        )

    @extend_schema(
        request=serializers.PredictBatchSerializer,
        responses={200: serializers.BatchPredictionSerializer, 400: BAD_REQUEST},
        description="Sliders for up to `max_previews` photos sent as previews, each answered in order with "
        "its adjustments or its own error, all by one model. Counted per photo against the predictions rate.",
    )
    def post(self, request):
        started = time.perf_counter()
        fields = {key: request.data.get(key) for key in request.data if key != "previews"}
        query = {key: request.query_params.get(key) for key in request.query_params}
        form = serializers.PredictBatchSerializer(
            data={**query, **fields, "previews": request.FILES.getlist("previews")}
        )
        form.is_valid(raise_exception=True)
        data = form.validated_data
        items, served = inference.predict_previews(request.user, data["previews"], data["strength"])
        served_items = [item for item in items if item.adjustments is not None]
        log_predictions(
            request.user,
            served,
            [item.adjustments for item in served_items],
            data["strength"],
            (time.perf_counter() - started) * 1000,
        )
        results = []
        for item in items:
            result = {"name": item.name}
            if item.adjustments is None:
                result["error"] = item.error
            else:
                result["adjustments"] = item.adjustments
                if data["format"] == "xmp":
                    result["xmp"] = to_xmp(item.adjustments)
            results.append(result)
        return Response({"model": served.describe(), "results": results})


class RenderView(APIView):
    parser_classes = [MultiPartParser]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "predictions"

    @extend_schema(
        request=serializers.RenderSerializer,
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, 400: BAD_REQUEST},
        description="The photo edited with the given sliders (default: your model's prediction), as JPEG.",
    )
    def post(self, request):
        rendered, adjustments = do_render(request.user, form_and_query(request))
        response = HttpResponse(rendered, content_type="image/jpeg")
        response["X-Adjustments"] = ",".join(f"{k}={v}" for k, v in adjustments.items())
        return response
