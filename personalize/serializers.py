"""Serializers: validate request shapes and render responses. Business rules live in the service modules."""

import json

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from personalize import imports
from personalize.images import PREVIEW_MAX_SIDE
from personalize.inference import BATCH_MAX_PREVIEWS
from personalize.models import JobEvent, Pair, PairImport, PersonalModel, TrainingJob
from personalize.pairs import pair_alignment
from rlcore.editor import ADJUSTMENTS


class AlignmentSerializer(serializers.Serializer):
    """Where the after's frame sits in the before (docs/pairs.md)."""

    identity = serializers.BooleanField(help_text="the after is the whole before, resized")
    scale = serializers.FloatField(help_text="after pixels per before pixel (0.5: exported at half size)")
    rotation_deg = serializers.FloatField(
        help_text="the after's frame turned clockwise in the before, degrees"
    )
    crop = serializers.ListField(
        child=serializers.IntegerField(),
        min_length=4,
        max_length=4,
        help_text="[x, y, w, h] in before pixels: the after's frame before its rotation about its centre",
    )


class PairSerializer(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField()
    before_size = serializers.SerializerMethodField()
    after_size = serializers.SerializerMethodField()
    alignment = serializers.SerializerMethodField()

    class Meta:
        model = Pair
        fields = [
            "id",
            "name",
            "tags",
            "content_hash",
            "before_size",
            "after_size",
            "alignment",
            "mask_source",
            "faces",
            "created_at",
        ]

    def get_tags(self, pair) -> list[str]:
        return pair.tag_names

    def get_before_size(self, pair) -> list[int]:
        return [pair.before_width, pair.before_height]

    def get_after_size(self, pair) -> list[int]:
        return [pair.after_width, pair.after_height]

    @extend_schema_field(AlignmentSerializer)
    def get_alignment(self, pair) -> dict:
        stored = pair_alignment(pair).to_json()
        return {key: stored[key] for key in ("identity", "scale", "rotation_deg", "crop")}


class PairUploadSerializer(serializers.Serializer):
    before = serializers.FileField(help_text="the original photo (JPEG, PNG, TIFF or WebP)")
    after = serializers.FileField(
        help_text="the editor's finished version of the same photo: cropped, straightened, any size"
    )
    mask = serializers.FileField(required=False, help_text="optional priority mask (white = faces/important)")
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    tags = serializers.CharField(required=False, allow_blank=True, help_text="comma-separated tags")


class BulkUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="a zip with before/ and after/ folders, files matched by name")
    tags = serializers.CharField(
        required=False, allow_blank=True, help_text="comma-separated tags for every pair"
    )


class SkippedSerializer(serializers.Serializer):
    name = serializers.CharField()
    reason = serializers.CharField()
    pair = serializers.IntegerField(
        required=False, help_text="only for a pair you already have: its id (not an error)"
    )


class StoredSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class PairImportSerializer(serializers.ModelSerializer):
    """A bulk zip's import: progress while a worker stores its pairs, then every file's outcome."""

    progress = serializers.SerializerMethodField(help_text="done / total, 0..1")
    eta_seconds = serializers.SerializerMethodField(
        help_text="while running: seconds left at the pace so far"
    )
    stored = StoredSerializer(many=True)
    skipped = SkippedSerializer(many=True)
    url = serializers.SerializerMethodField(help_text="where to follow it")

    class Meta:
        model = PairImport
        fields = [
            "id",
            "status",
            "file_name",
            "tags",
            "total",
            "done",
            "progress",
            "eta_seconds",
            "stored",
            "skipped",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "url",
        ]

    def get_progress(self, row) -> float:
        return imports.progress(row)

    def get_eta_seconds(self, row) -> float | None:
        return imports.eta_seconds(row)

    def get_url(self, row) -> str:
        return reverse("pair-import-detail", args=[row.pk])


class JobCreateSerializer(serializers.Serializer):
    seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="training budget in seconds; 0 = the instant model alone (the style prior's answer for these "
        "pairs: each pair's sliders searched and a policy fitted to them, calibrated; no RL). It grows with the "
        "pairs, and every job computes it first: about 4-6 s for 10 pairs, 10-16 s for 50, 21-40 s for 200 on one core",
    )
    face_weight = serializers.FloatField(required=False, default=0.0, min_value=0.0, max_value=10.0)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)
    tag = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)

    def validate_seconds(self, value):
        if value > settings.TRAINING_MAX_SECONDS:
            raise serializers.ValidationError(f"at most {settings.TRAINING_MAX_SECONDS} seconds")
        return value


class JobSerializer(serializers.ModelSerializer):
    model = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "status",
            "progress",
            "eta_seconds",
            "step",
            "val_delta_e",
            "metrics",
            "error",
            "model",
            "seconds",
            "face_weight",
            "seed",
            "tag",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["at", "kind", "message", "data"]


class PersonalModelSerializer(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = PersonalModel
        fields = [
            "id",
            "version",
            "active",
            "metrics",
            "size_bytes",
            "sha256",
            "base_version",
            "job",
            "created_at",
        ]

    def get_active(self, model) -> bool:
        return model.pk == self.context.get("active_model_id")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class NotEnoughPairsSerializer(ErrorSerializer):
    required = serializers.IntegerField()
    available = serializers.IntegerField()


class ActiveJobSerializer(ErrorSerializer):
    active_job = serializers.IntegerField()


def _strength_field():
    return serializers.FloatField(
        required=False, default=1.0, min_value=0.0, max_value=2.0, help_text="scales every slider (0 to 2)"
    )


class PredictSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="one photo (JPEG, PNG, TIFF or WebP)")
    strength = _strength_field()
    format = serializers.ChoiceField(choices=["json", "xmp"], required=False, default="json")


class ServedModelSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    version = serializers.CharField()
    kind = serializers.ChoiceField(choices=["personal", "base"])


class PredictionSerializer(serializers.Serializer):
    adjustments = serializers.DictField(child=serializers.IntegerField(min_value=-100, max_value=100))
    model = ServedModelSerializer()


class PredictBatchSerializer(serializers.Serializer):
    previews = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),  # an empty one is that preview's own error
        min_length=1,
        max_length=BATCH_MAX_PREVIEWS,
        help_text=f"1 to {BATCH_MAX_PREVIEWS} previews (repeat the field), answered in this order: each the "
        f"64x64 thumbnail (PNG) or a JPEG/PNG/WebP of at most {PREVIEW_MAX_SIDE} px on its long side, "
        "already decoded from the photo, EXIF orientation applied, sRGB",
    )
    strength = _strength_field()
    format = serializers.ChoiceField(
        choices=["json", "xmp"], required=False, default="json", help_text="xmp: also each XMP sidecar"
    )


class BatchItemSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the preview's file name as sent")
    adjustments = serializers.DictField(
        child=serializers.IntegerField(min_value=-100, max_value=100), required=False
    )
    xmp = serializers.CharField(required=False, help_text="with format=xmp: the sidecar's text")
    error = serializers.CharField(required=False, help_text="why this preview got no prediction")


class BatchPredictionSerializer(serializers.Serializer):
    model = ServedModelSerializer(help_text="the one model that answered the whole batch")
    results = BatchItemSerializer(many=True)


class BatchLimitsSerializer(serializers.Serializer):
    model = ServedModelSerializer(help_text="the model that answers your predictions now")
    max_previews = serializers.IntegerField(help_text="previews per request")
    preview_size = serializers.IntegerField(help_text="the model's thumbnail side: send previews this size")
    max_preview_side = serializers.IntegerField(help_text="the largest preview accepted (long side)")


class RenderSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="the photo to edit")
    adjustments = serializers.CharField(
        required=False, help_text="JSON object {slider: int}; default: the editor's model's prediction"
    )
    strength = _strength_field()
    max_size = serializers.IntegerField(
        required=False, min_value=16, max_value=20000, help_text="longest side"
    )

    def validate_adjustments(self, value):
        try:
            adjustments = json.loads(value)
        except json.JSONDecodeError as exc:
            raise serializers.ValidationError(f"not valid JSON ({exc.msg})") from exc
        if not isinstance(adjustments, dict):
            raise serializers.ValidationError("expected a JSON object {slider: value}")
        unknown = sorted(set(adjustments) - set(ADJUSTMENTS))
        if unknown:
            raise serializers.ValidationError(f"unknown sliders: {', '.join(unknown)}")
        for name, amount in adjustments.items():
            if not isinstance(amount, int | float) or isinstance(amount, bool) or not -100 <= amount <= 100:
                raise serializers.ValidationError(f"{name} must be a number from -100 to 100")
        return {name: round(amount) for name, amount in adjustments.items()}
