"""What an editor's model does to their own pairs: for the web app's Results and Pairs pages, and for the
worker that compares a new model with the active one on pairs the active one was not fitted to
(``job_split``; workers.training.compare_with_active).

For a published model, the pairs its job held out for validation are found again, the way the job chose
them: the job's pairs (its tag; uploaded before it started; by id, as workers/training.py loads them) split
with the job's seed by fine-tuning's own rule (``rlcore.agent.train_val_split``). If pairs of that job were
deleted since, the held-out ones can no longer be named: then every remaining pair is shown, and the page
says so.

Each pair is scored as validation scores it: the model's sliders for the stored 64x64 before thumbnail,
the thumbnail edited with them, and the mean CIEDE2000 to the after thumbnail (every pixel counted alike,
without the face weighting a job may have used). The images the page shows are larger renders of the
same edit, made on request by ``preview``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from personalize import inference
from personalize.images import inspect_bytes
from personalize.jobs import training_pairs
from personalize.models import Pair, PersonalModel
from personalize.pairs import pair_alignment, pair_thumbnails
from rlcore.agent import Config, train_val_split
from rlcore.align import warp_before
from rlcore.editor import ADJUSTMENTS, apply, apply_batch
from rlcore.imageio import fit_within
from rlcore.reward import mean_delta_e, srgb_to_lab

# Longest side of the images the web app shows; photos are decoded at most twice this large (JPEG draft
# mode), since the after may show only part of the before.
PREVIEW_SIDE = 480
PREVIEWS = ("before", "after", "model")


@dataclass
class PairResult:
    pair: Pair
    adjustments: dict[str, int]
    delta_e_model: float  # the model's edit against the editor's own edit
    delta_e_no_edit: float  # the untouched before against the editor's own edit


@dataclass
class Results:
    model: PersonalModel
    pairs: list[PairResult]  # best first (lowest dE00 of the model's edit)
    held_out: bool  # True: the job's validation pairs; False: every current pair (see the module doc)


def job_split(model: PersonalModel) -> tuple[list[Pair], list[Pair]] | None:
    """(the pairs the model was fitted to, the pairs its job validated on), found again as the module
    says; None where they cannot be named (no job, or some of the job's pairs deleted since)."""
    job = model.job
    if job is None or job.started_at is None:
        return None
    candidates = list(
        training_pairs(model.owner, job.tag).filter(created_at__lte=job.started_at).order_by("id")
    )
    expected = int(model.metrics.get("train_pairs", 0)) + int(model.metrics.get("val_pairs", 0))
    if len(candidates) != expected or expected < 2:
        return None
    train_idx, val_idx = train_val_split(len(candidates), Config().val_fraction, job.seed)
    return [candidates[i] for i in train_idx], [candidates[i] for i in val_idx]


def held_out_pairs(model: PersonalModel) -> tuple[list[Pair], bool]:
    """(pairs, True) for the pairs the model's job validated on, else (every pair of the editor, False)."""
    split = job_split(model)
    if split is None:
        return list(Pair.objects.filter(owner=model.owner_id).order_by("id")), False
    return split[1], True


def score_pairs(model: PersonalModel, pairs: list[Pair]) -> list[PairResult]:
    """Each pair's dE00 with the model's edit and with no edit, best first."""
    if not pairs:
        return []
    thumbs = [pair_thumbnails(pair) for pair in pairs]
    before = np.stack([t.before for t in thumbs])
    target = srgb_to_lab(torch.from_numpy(np.stack([t.after for t in thumbs])))
    sliders = inference.personal_model(model).model.predict_thumbnails(np.stack([t.view for t in thumbs]))
    before_t = torch.from_numpy(before)
    edited = apply_batch(before_t, torch.from_numpy(sliders))
    with_model = mean_delta_e(edited, target).tolist()
    no_edit = mean_delta_e(before_t, target).tolist()
    results = [
        PairResult(
            pair=pair,
            adjustments={name: int(v) for name, v in zip(ADJUSTMENTS, row, strict=True)},
            delta_e_model=round(de_model, 2),
            delta_e_no_edit=round(de_none, 2),
        )
        for pair, row, de_model, de_none in zip(pairs, sliders, with_model, no_edit, strict=True)
    ]
    return sorted(results, key=lambda r: (r.delta_e_model, r.pair.pk))


def results_for(model: PersonalModel) -> Results:
    pairs, held_out = held_out_pairs(model)
    return Results(model=model, pairs=score_pairs(model, pairs), held_out=held_out)


def _decode(field: str, file_field, side: int) -> np.ndarray:
    with file_field.open("rb") as handle:
        return inspect_bytes(field, handle.read()).decode(max_side=side)


def preview(pair: Pair, which: str, model: PersonalModel | None = None) -> Image.Image:
    """The pair's before (cut to the after's frame), its after, or the model's edit of the before.

    Raises UploadError if a stored photo can no longer be decoded.
    """
    if which == "after":
        return Image.fromarray(fit_within(_decode("after", pair.after, PREVIEW_SIDE), PREVIEW_SIDE))
    region = warp_before(_decode("before", pair.before, 2 * PREVIEW_SIDE), pair_alignment(pair))
    region = fit_within(region, PREVIEW_SIDE)
    if which == "model":
        view = pair_thumbnails(pair).view  # the model sees the whole photo
        row = inference.personal_model(model).model.predict_thumbnails(view[None])[0]
        region = apply(region, {name: int(v) for name, v in zip(ADJUSTMENTS, row, strict=True)})
    return Image.fromarray(region)
