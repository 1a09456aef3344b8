"""Serving predictions: which model answers an editor, a per-process model cache, strength scaling.

Each request reads the editor's active-model pointer from the database (one indexed query), so that an
activation in any process takes effect everywhere at once; the loaded weights come from an LRU cache keyed
by model id, so nothing is read from disk per request in steady state.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connections, router
from rest_framework.exceptions import APIException

from personalize.images import UploadError, read_preview
from personalize.models import EditorProfile, PersonalModel
from rlcore.editor import ADJUSTMENTS
from rlcore.modelfile import BASE_MODEL_PATH, load_model

# Prediction decodes photos at most this large: the model sees a 64x64 thumbnail, and a JPEG decoded in
# draft mode at 1/8 scale is many times faster than a full decode.
PREDICTION_SIDE = 256


@dataclass(frozen=True)
class ServedModel:
    kind: str  # "personal" | "base"
    id: int | None
    version: int | str
    model: object  # rlcore.modelfile.PersonalModel

    def describe(self) -> dict:
        return {"id": self.id, "version": self.version, "kind": self.kind}


class ModelCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key, loader):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = loader()
        with self._lock:
            self.loads += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def discard(self, key) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


cache = ModelCache(settings.MODEL_CACHE_SIZE)


def base_model_path():
    return settings.BASE_MODEL_PATH or BASE_MODEL_PATH


def base_model() -> ServedModel:
    """The shared base model, for predictions and as fine-tuning's start (the one cache for both)."""
    path = str(base_model_path())

    def load():
        model = load_model(path)
        return ServedModel("base", None, str(model.metadata.get("base_version", "base")), model)

    return cache.get(("base", path), load)


log = logging.getLogger(__name__)


class ModelFileMissing(APIException):
    """The editor's active model has no file in storage (deleted out of band, or a storage outage that
    answers so). 503, not the base model's sliders: a client asked for this editor's style."""

    status_code = 503
    default_detail = (
        "the active model's file is missing from storage: activate another version or train again"
    )
    default_code = "model_file_missing"


def personal_model(row: PersonalModel) -> ServedModel:
    def load():
        try:
            with default_storage.open(row.file, "rb") as handle:
                return ServedModel("personal", row.pk, row.version, load_model(handle.read()))
        except FileNotFoundError as exc:
            log.warning("model %s: its file %s is missing from storage", row.pk, row.file)
            raise ModelFileMissing() from exc

    return cache.get(("personal", row.pk, row.sha256), load)


_ACTIVE_MODEL_FIELDS = ("id", "version", "file", "sha256")


def _active_model_sql(connection) -> str:
    """One indexed join: the editor's profile row (unique per user) and the model it points to, if any."""
    qn = connection.ops.quote_name
    profile, model = EditorProfile._meta, PersonalModel._meta
    columns = ", ".join(f"m.{qn(model.get_field(name).column)}" for name in _ACTIVE_MODEL_FIELDS)
    return (
        f"SELECT {columns} FROM {qn(profile.db_table)} p INNER JOIN {qn(model.db_table)} m "
        f"ON m.{qn(model.pk.column)} = p.{qn(profile.get_field('active_model').column)} "
        f"WHERE p.{qn(profile.get_field('user').column)} = %s"
    )


def model_for(user) -> ServedModel:
    """The editor's active personal model, else the shared base model.

    Read on every prediction, so written as the one SQL statement it is: the ORM's building and compiling
    of the same query cost ~1 ms of a full-file prediction's CPU, 50 times the query itself.
    """
    connection = connections[router.db_for_read(PersonalModel)]
    with connection.cursor() as cursor:
        cursor.execute(_active_model_sql(connection), [user.pk])
        row = cursor.fetchone()
    if row is None:
        return base_model()
    return personal_model(PersonalModel.from_db(connection.alias, _ACTIVE_MODEL_FIELDS, row))


def scale(adjustments: dict[str, int], strength: float) -> dict[str, int]:
    """Scale every slider by `strength` (0..2), rounded and clipped to the editor's range."""
    # min/max, not np.clip: numpy's per-call overhead on 12 scalars was ~0.2 ms of every prediction
    return {
        name: min(100, max(-100, int(round(adjustments.get(name, 0) * strength)))) for name in ADJUSTMENTS
    }


def predict(user, image: np.ndarray, strength: float = 1.0) -> tuple[dict[str, int], ServedModel]:
    served = model_for(user)
    with torch.inference_mode():  # lighter than the model's no_grad alone: ~0.3 ms of a prediction
        return scale(served.model.predict(image), strength), served


# At most this many previews per POST /api/v1/predict/batch: a batch of 64-pixel thumbnails is ~0.6 MB
# and one forward pass; Django refuses more than DATA_UPLOAD_MAX_NUMBER_FILES (100) files per request.
BATCH_MAX_PREVIEWS = 64


@dataclass
class BatchItem:
    name: str
    adjustments: dict[str, int] | None = None
    error: str | None = None


def predict_previews(user, previews, strength: float = 1.0) -> tuple[list[BatchItem], ServedModel]:
    """A batch of uploaded previews -> one item per preview, in order, and the one model that served them.

    A preview that cannot be read answers its own error and the others are still served. The model is
    looked up once and runs once, on every readable preview's thumbnail stacked into one tensor.
    """
    items, thumbnails = [], []
    for upload in previews:
        item = BatchItem(name=(getattr(upload, "name", "") or "")[:255])
        try:
            thumbnails.append((item, read_preview(upload)))
        except UploadError as exc:
            item.error = exc.reason
        items.append(item)
    served = model_for(user)
    if thumbnails:
        with torch.inference_mode():
            rows = served.model.predict_thumbnails(np.stack([thumb for _, thumb in thumbnails]))
        names = served.model.adjustments
        for (item, _), row in zip(thumbnails, rows, strict=True):
            item.adjustments = scale(dict(zip(names, map(int, row), strict=True)), strength)
    return items, served
