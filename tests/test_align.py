"""rlcore.align: finding an edited, cropped, straightened, resized export in its original, or refusing.

The generated pairs (bench/bench_align.py) are real photos cut into afters by random crops (27-100 % of
the area, any common aspect ratio), rotations (+-10°), export sizes and JPEG quality 70-95, with strong
random edits of all 12 sliders and now and then a vignette and a healed spot.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.bench_align import (
    TOLERANCE,
    frame_error,
    generated_pairs,
    make_pair,
    photos,
    refusal_cases,
    retouch,
)
from rlcore import editor
from rlcore.align import Alignment, NotAligned, align, identity, warp_before
from rlcore.data import load_pairs_dir, sample_photo
from rlcore.imageio import thumbnail

PAIRS = 200


def test_generated_pairs_are_aligned_within_one_percent_of_the_width():
    errors = []
    for name, before, pair in generated_pairs(PAIRS, seed=0):
        try:
            errors.append((frame_error(align(before, pair.after), pair.truth), name))
        except NotAligned as exc:
            errors.append((math.inf, f"{name}: {exc.reason}"))
    misses = [(error, name) for error, name in errors if error > TOLERANCE]
    assert len(errors) - len(misses) >= 0.99 * PAIRS, misses


def test_every_refusal_case_is_refused_with_its_reason():
    wrong = []
    for label, words, before, after in refusal_cases(seed=0):
        try:
            wrong.append(f"{label}: accepted as {align(before, after).describe()}")
        except NotAligned as exc:
            if words not in exc.reason:
                wrong.append(f"{label}: {exc.reason}")
    assert wrong == []


def test_a_blank_before_is_named_as_the_culprit():
    with pytest.raises(NotAligned) as refused:
        align(np.zeros((300, 400, 3), np.uint8), sample_photo("coffee"))
    assert refused.value.side == "before" and "blank" in refused.value.reason


def test_a_sideways_after_and_an_after_with_a_border_are_refused_for_what_they_are():
    before = sample_photo("coffee")
    edited = editor.apply(before, {"exposure": 20})
    with pytest.raises(NotAligned, match="turned by 90°"):
        align(before, np.ascontiguousarray(np.rot90(edited)))
    framed = np.pad(edited, ((40, 40), (60, 60), (0, 0)), constant_values=255)
    with pytest.raises(NotAligned, match="shows more than the before"):
        align(before, framed)


def test_local_retouching_does_not_break_alignment():
    rng = np.random.default_rng(7)
    for name in ("astronaut", "coffee", "sklearn:flower.jpg"):
        before = sample_photo(name)
        pair = make_pair(rng, before)
        retouched = retouch(retouch(pair.after, rng), rng)  # two vignettes, two healed spots
        assert frame_error(align(before, retouched), pair.truth) <= TOLERANCE, name


def test_the_whole_photo_resized_and_edited_is_the_identity():
    before = sample_photo("chelsea")
    small = np.asarray(Image.fromarray(before).resize((300, 200), Image.Resampling.BOX))
    found = align(before, editor.apply(small, {"exposure": 40, "contrast": 30, "saturation": -50}))
    assert found.is_identity and found.describe() == "identity"
    assert found.scale == pytest.approx(300 / 451, rel=1e-3)
    assert found.crop == pytest.approx((0, 0, 451, 300), abs=1)
    # The identity cuts nothing: the before's thumbnail is exactly the one it always was.
    assert np.array_equal(thumbnail(warp_before(before, found)), thumbnail(before))


def test_warped_before_shows_the_same_place_as_the_after():
    rng = np.random.default_rng(3)
    before = sample_photo("rocket")
    # No edit, no retouching: the pixels themselves must agree.
    pair = make_pair(rng, before, min_area=0.4, strength=0, retouch_chance=0)
    found = align(before, pair.after)
    size = (pair.after.shape[1], pair.after.shape[0])
    aligned = warp_before(before, found, out_size=size).astype(np.float32)
    naive = np.asarray(Image.fromarray(before).resize(size, Image.Resampling.BOX), dtype=np.float32)
    after = pair.after.astype(np.float32)
    assert np.abs(aligned - after).mean() < 6 < np.abs(naive - after).mean()
    # Thumbnails, as the trainer gets them, agree too.
    thumbs = (
        thumbnail(warp_before(before, found)).astype(np.float32),
        thumbnail(pair.after).astype(np.float32),
    )
    assert np.abs(thumbs[0] - thumbs[1]).mean() < 4


def test_alignment_reports_crop_rotation_and_scale_and_survives_json_and_resizing():
    rng = np.random.default_rng(11)
    before = sample_photo("sklearn:china.jpg")
    pair = make_pair(rng, before, min_area=0.5)
    found = align(before, pair.after)
    truth = pair.truth
    assert found.rotation_deg == pytest.approx(truth.rotation_deg, abs=0.3)
    assert found.scale == pytest.approx(truth.scale, rel=0.01)
    assert np.allclose(found.crop, truth.crop, atol=0.01 * before.shape[1])
    assert found.area_fraction == pytest.approx(truth.area_fraction, rel=0.03)
    assert "cropped" in found.describe() and "rotated" in found.describe()

    stored = json.loads(json.dumps(found.to_json()))
    assert set(stored) >= {"identity", "scale", "rotation_deg", "crop", "matrix"} and not stored["identity"]
    back = Alignment.from_json(stored, found.before_size, found.after_size)
    assert np.allclose(back.corners(), found.corners(), atol=1e-4)
    # The same photos at twice the size: every corner twice as far from the origin.
    double = found.resized(
        (2 * found.before_size[0], 2 * found.before_size[1]), tuple(2 * v for v in found.after_size)
    )
    assert np.allclose(double.corners(), 2 * found.corners(), atol=1e-6)
    assert double.rotation_deg == pytest.approx(found.rotation_deg)
    # Pairs stored before alignment existed have no alignment: the identity.
    assert Alignment.from_json({}, (600, 400), (300, 200)).is_identity
    assert identity((600, 400), (300, 200)).to_json()["crop"] == [0, 0, 600, 400]


def _save(image: np.ndarray, path) -> None:
    Image.fromarray(image).save(path, quality=92)


def test_pairs_folder_aligns_crops_and_refuses_wrong_pairs(tmp_path):
    """rlcore's command line reads pairs through load_pairs_dir: same alignment, same refusals."""
    rng = np.random.default_rng(5)
    library = photos()
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    coffee, astronaut, chelsea = library["coffee"], library["astronaut"], library["chelsea"]
    cropped = make_pair(rng, coffee, min_area=0.4, strength=30)
    files = {
        "whole": (chelsea, editor.apply(chelsea, {"exposure": 25})),
        "cropped": (coffee, cropped.after),
        "misnamed": (astronaut, editor.apply(library["rocket"], {"exposure": 25})),
        "mirrored": (astronaut, np.ascontiguousarray(editor.apply(astronaut, {"tint": 30})[:, ::-1])),
    }
    for name, (before, after) in files.items():
        _save(before, tmp_path / "before" / f"{name}.png")
        _save(after, tmp_path / "after" / f"{name}.jpg")
    lines: list[str] = []
    pairs = load_pairs_dir(tmp_path, warn=lines.append)
    assert pairs.names == ["cropped", "whole"]
    text = "\n".join(lines)
    assert len(lines) == 3, text
    assert "aligned pair cropped: cropped" in text
    assert "refused pair misnamed: the after does not show the same photo" in text
    assert "refused pair mirrored: the after is a mirror image" in text
    # The cropped pair's before thumbnail is the region the after shows.
    # (Within 0.15 % of the width here: a fraction of a thumbnail pixel, on coffee's sharp edges.)
    stored = pairs.before[0].astype(float)
    assert np.abs(stored - thumbnail(warp_before(coffee, cropped.truth))).mean() < 4
    assert np.abs(stored - thumbnail(coffee)).mean() > 20
    assert np.array_equal(pairs.before[1], thumbnail(chelsea))
    # What the model sees of each photo is the whole before (the uncropped pair's is its before).
    assert np.array_equal(pairs.view[0], thumbnail(coffee)) and np.array_equal(pairs.view[1], pairs.before[1])


def test_rlcore_command_line_lists_aligned_and_refused_pairs(tmp_path, capsys):
    from rlcore.cli import main
    from rlcore.modelfile import PersonalModel, save_model
    from rlcore.networks import Actor, Critic

    torch.manual_seed(0)
    model = tmp_path / "base.pt"
    save_model(PersonalModel(Actor(), Critic(), metadata={"kind": "base"}), model)
    rng = np.random.default_rng(9)
    root = tmp_path / "pairs"
    (root / "before").mkdir(parents=True)
    (root / "after").mkdir()
    for name in ("coffee", "rocket", "astronaut"):
        before = sample_photo(name)
        _save(before, root / "before" / f"{name}.png")
        _save(make_pair(rng, before, min_area=0.5, strength=30).after, root / "after" / f"{name}.jpg")
    _save(sample_photo("chelsea"), root / "before" / "wrong.png")
    _save(sample_photo("coffee"), root / "after" / "wrong.jpg")
    code = main(["evaluate", "--model", str(model), "--pairs", str(root)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["pairs"] == 3
    for name in ("coffee", "rocket", "astronaut"):
        assert f"aligned pair {name}: cropped" in err
    assert "refused pair wrong: the after does not show the same photo as the before" in err


def test_client_words_the_alignment():
    from personalize.client.commands.upload import alignment_text

    pair = {
        "before_size": [1000, 800],
        "alignment": {"identity": False, "scale": 0.5, "rotation_deg": 1.23, "crop": [50, 40, 900, 728]},
    }
    assert alignment_text(pair) == "aligned: cropped 18 %, rotated 1.2°"
    assert alignment_text({"before_size": [10, 10], "alignment": {"identity": True}}) is None
    assert alignment_text({"before_size": [10, 10]}) is None  # an older server: no alignment
