"""The service's data: editors' before/after pairs, training jobs and their events, personal models.

Files live in media storage under paths these models name; the rows are the source of truth. A training
job's row also carries its lease (which worker runs it, until when), so that a duplicate delivery of the
Celery message can never run a job twice (see workers/tasks.py).
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


def pair_upload_path(pair: "Pair", filename: str) -> str:
    return f"pairs/{pair.owner_id}/{pair.uid}/{filename}"


class EditorProfile(models.Model):
    """Per-editor state that is not authentication: which personal model answers predictions."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="editor_profile"
    )
    active_model = models.ForeignKey(
        "PersonalModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"profile of {self.user}"


class Pair(models.Model):
    """One before/after example of an editor's style, with the thumbnails the trainer needs."""

    class MaskSource(models.TextChoices):
        UPLOADED = "uploaded"
        DETECTED = "detected"
        NONE = "none"

    uid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pairs")
    name = models.CharField(max_length=255, blank=True)
    content_hash = models.CharField(
        max_length=64, db_index=True, help_text="sha256 of before bytes + after bytes"
    )
    before = models.FileField(upload_to=pair_upload_path, max_length=300)
    after = models.FileField(upload_to=pair_upload_path, max_length=300)
    mask = models.FileField(upload_to=pair_upload_path, max_length=300, blank=True)
    before_thumb = models.FileField(upload_to=pair_upload_path, max_length=300)
    after_thumb = models.FileField(upload_to=pair_upload_path, max_length=300)
    mask_thumb = models.FileField(upload_to=pair_upload_path, max_length=300, blank=True)
    # The whole before's thumbnail, where the after shows only a part of it (a crop): what the model sees of
    # the photo, as it sees the photos it is asked about. Empty: the before_thumb is the whole photo.
    view_thumb = models.FileField(upload_to=pair_upload_path, max_length=300, blank=True)
    mask_source = models.CharField(max_length=10, choices=MaskSource.choices, default=MaskSource.NONE)
    faces = models.PositiveIntegerField(default=0, help_text="faces detected in the before photo")
    before_width = models.PositiveIntegerField()
    before_height = models.PositiveIntegerField()
    after_width = models.PositiveIntegerField()
    after_height = models.PositiveIntegerField()
    # Where the after's frame sits in the before (rlcore.align.Alignment.to_json(), full-size pixels): the
    # thumbnails were cut accordingly. Empty for pairs stored before alignment existed: the identity.
    alignment = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "content_hash"])]

    def __str__(self) -> str:
        return self.name or f"pair {self.pk}"

    @property
    def tag_names(self) -> list[str]:
        return sorted(tag.name for tag in self.tags.all())


class PairTag(models.Model):
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pair", "name"], name="unique_tag_per_pair")]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name


class LeasedWork(models.Model):
    """What a training job and a pair import share: their times, and the lease that makes the row, not the
    broker, the source of truth (personalize.jobs: lease_is_live, out_of_attempts): which execution holds
    it (`lease_owner`, unique per execution), whether it is alive (`heartbeat_at`) and how many
    executions it took (`attempts`, counted when a lease is taken)."""

    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class PairImport(LeasedWork):
    """A bulk zip of pairs, imported by a worker one pair at a time (personalize/imports.py has its states).

    The zip is kept in media storage until the import finishes, so that any worker can read it. `done` is
    the cursor: the first `done` matched pairs (in the order personalize.pairs.plan_bulk_zip gives) have
    their outcome recorded, in the same transaction as the pair's row, so that a resumed import neither
    skips nor repeats one.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pair_imports")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    file_name = models.CharField(max_length=255, blank=True, help_text="the zip's name as uploaded")
    archive = models.CharField(max_length=300, blank=True, help_text="path in media storage until finished")
    tags = models.JSONField(default=list, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="pairs matched in the zip")
    done = models.PositiveIntegerField(default=0, help_text="pairs processed (stored or skipped)")
    stored = models.JSONField(default=list, blank=True, help_text='[{"id", "name"}] of the pairs stored')
    skipped = models.JSONField(default=list, blank=True, help_text='[{"name", "reason"[, "pair"]}]')
    error = models.TextField(blank=True)
    # Times and the lease, as a training job's: LeasedWork.

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"


class PersonalModel(models.Model):
    """One published version of an editor's personal model. Rows are only created with their file in place."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_models"
    )
    version = models.PositiveIntegerField()
    file = models.CharField(max_length=300, help_text="path in media storage")
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    base_version = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    job = models.OneToOneField(
        "TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="published_model"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["owner", "version"], name="unique_model_version")]

    def __str__(self) -> str:
        return f"{self.owner} v{self.version}"


class TrainingJob(LeasedWork):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_jobs"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # What was asked.
    seconds = models.PositiveIntegerField()
    face_weight = models.FloatField(default=0.0)
    seed = models.IntegerField(default=0)
    tag = models.CharField(max_length=64, blank=True)
    # Progress, written by the worker at most once a second.
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    val_delta_e = models.FloatField(null=True, blank=True)
    curve = models.JSONField(default=list, blank=True, help_text="[[step, validation mean ΔE00], ...]")
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    model = models.ForeignKey(
        PersonalModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Times and the lease: LeasedWork. The editor's cancel flag, which the worker polls:
    cancel_requested = models.BooleanField(default=False)
    training_seconds = models.FloatField(null=True, blank=True, help_text="time spent inside rlcore")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_job_per_editor",
            )
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


def succeeded_durations(jobs: models.QuerySet) -> list[float]:
    """Wall time in seconds, start to publish, of the succeeded jobs among `jobs`: the one definition the
    queue dashboard and /metrics share."""
    rows = jobs.filter(
        status=TrainingJob.Status.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
    )
    return [(end - start).total_seconds() for start, end in rows.values_list("started_at", "finished_at")]


class JobEvent(models.Model):
    class Kind(models.TextChoices):
        QUEUED = "queued"
        STARTED = "started"
        PROGRESS = "progress"
        CHECKPOINT = "checkpoint"
        RETRIED = "retried"
        REQUEUED = "requeued"
        CANCEL_REQUESTED = "cancel_requested"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%H:%M:%S}"


class Prediction(models.Model):
    """A log of served predictions (for the editor's own history and for metrics); no photo is kept."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="predictions")
    model = models.ForeignKey(
        PersonalModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_kind = models.CharField(max_length=10)
    adjustments = models.JSONField()
    strength = models.FloatField(default=1.0)
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"prediction {self.pk} ({self.model_kind})"
