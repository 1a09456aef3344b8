"""What answers an editor's predictions, and the record of what did: one function for each change.

`activate_model` is the only writer of the editor's active-model pointer (the API's activate endpoint and a
worker publishing a better model both call it); `log_prediction` (one photo) and `log_predictions` (a
batch, one INSERT) are the only writers of the prediction log.
"""

from __future__ import annotations

from django.db import connections, router

from personalize import metrics
from personalize.inference import ServedModel
from personalize.models import EditorProfile, PersonalModel, Prediction


def activate_model(owner, model: PersonalModel) -> None:
    """Make `model` answer `owner`'s predictions from the next request on, in every process.

    Processes read the pointer per request (personalize.inference), so nothing else needs telling. Called
    inside the publishing transaction by the workers, so that a model and its activation commit together.
    """
    # An editor's predictions must only ever come from their own model: callers scope by owner, this keeps
    # a slip in one of them from serving another editor's style.
    if model.owner_id != owner.pk:
        raise ValueError(f"model {model.pk} belongs to another editor")
    EditorProfile.objects.update_or_create(user=owner, defaults={"active_model": model})


def log_prediction(
    owner, served: ServedModel, adjustments: dict[str, int], strength: float, latency_ms: float
) -> None:
    """Record one served prediction: its row (the editor's history, /metrics' counts) and its latency."""
    log_predictions(owner, served, [adjustments], strength, latency_ms)


def log_predictions(
    owner, served: ServedModel, adjustments: list[dict[str, int]], strength: float, latency_ms: float
) -> None:
    """Record a batch's predictions in one INSERT; each is logged with its share of the batch's latency."""
    if not adjustments:
        return
    share = latency_ms / len(adjustments)
    rows = [
        Prediction(
            owner=owner,
            model_id=served.id,
            model_kind=served.kind,
            adjustments=values,
            strength=strength,
            latency_ms=share,
        )
        for values in adjustments
    ]
    _insert(rows)
    histogram = metrics.PREDICTION_LATENCY.labels(kind=served.kind)
    for _ in adjustments:
        histogram.observe(share / 1000)


# Every column but the key, from the model itself: a field added to Prediction is written as save() would.
_LOG_FIELDS = [field for field in Prediction._meta.concrete_fields if not field.primary_key]


def _insert(rows: list[Prediction]) -> None:
    """rows as one INSERT in autocommit, their values converted by each field as the ORM converts them. At
    most a batch's previews (inference.BATCH_MAX_PREVIEWS, 64: 448 parameters, within every backend's limit).

    Written out because it runs with every prediction: Model.save (or bulk_create's transaction around
    one statement) built and compiled the same INSERT each time (the log's phase of a full-file prediction
    0.69-0.83 ms, now 0.48-0.54: bench/profile_predict.py).
    """
    connection = connections[router.db_for_write(Prediction)]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(field.column) for field in _LOG_FIELDS)
    row_marks = "(" + ", ".join(["%s"] * len(_LOG_FIELDS)) + ")"
    params = [
        field.get_db_prep_save(field.pre_save(row, add=True), connection)
        for row in rows
        for field in _LOG_FIELDS
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Prediction._meta.db_table)} ({columns}) VALUES {', '.join([row_marks] * len(rows))}",
            params,
        )
