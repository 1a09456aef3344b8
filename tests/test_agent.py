"""The actor-critic agent: learning, determinism, resumption, cancellation, progress, time budget.

Fast by design: a fresh (untrained) base, a few hundred steps on generated pairs with a known edit.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rlcore import editor, reward
from rlcore.agent import (
    Cancelled,
    Config,
    PairSet,
    Progress,
    _augment_pool,
    _Pool,
    _SetupProgress,
    _Val,
    finetune,
    instant_step_seconds,
    validation_delta_e,
)
from rlcore.features import N_FEATURES, conv_input, features
from rlcore.modelfile import PersonalModel
from rlcore.networks import Actor, Critic, n_params

pytestmark = pytest.mark.filterwarnings("ignore")

# short runs from an untrained base: milder augmentation than the default (which is tuned for 60 s runs
# from the shipped base) so that 300 steps learn the known edit
FAST = dict(
    val_every=5,
    patience=10**6,
    checkpoint_every_s=0.0,
    aug_copies=2,
    aug_strength=0.5,
    p_original=0.5,
    batch_size=128,
)


def fresh_base(seed: int = 0) -> PersonalModel:
    torch.manual_seed(seed)
    return PersonalModel(Actor(), Critic(), metadata={"kind": "base"})


def scenes(n: int, seed: int) -> np.ndarray:
    """Generated 64x64 'photos': smooth colour gradients, blobs and noise at random exposures."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0.05, 0.8, 3), rng.uniform(0.05, 0.8, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) % 1.0
        img = c0 + (c1 - c0) * t[..., None]
        cy, cx, r = rng.uniform(0.2, 0.8, 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.05 * r + 0.01))
        img = img + blob[..., None] * rng.uniform(-0.3, 0.4, 3)
        img = img * rng.uniform(0.5, 1.2) + rng.normal(0, 0.02, img.shape)
        out[i] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def exposure_pairs(n: int = 24, seed: int = 0, exposure: int = 40, temperature: int = 0) -> PairSet:
    before = scenes(n, seed)
    sliders = torch.zeros(n, 12)
    sliders[:, editor.ADJUSTMENTS.index("exposure")] = exposure
    sliders[:, editor.ADJUSTMENTS.index("temperature")] = temperature
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()
    return PairSet(before=before, after=after)


def test_features_and_parameter_counts():
    x = scenes(5, 1)
    f = features(x)
    assert f.shape == (5, N_FEATURES) and torch.isfinite(f).all()
    # brighter photo -> higher lightness percentiles
    brighter = editor.apply_batch(torch.from_numpy(x), torch.tensor([[0, 0, 50] + [0] * 9] * 5))
    assert (features(brighter)[:, 21:28] >= f[:, 21:28] - 1e-6).all()
    assert n_params(Actor()) < 50_000 and n_params(Critic()) < 150_000
    # KEY_FEATURES name what they say: on a flat warm grey, black = white point per channel, no lightness
    # spread, a warm cast (b* > 0) and grey world R/G > 0 > B/G
    from rlcore.features import KEY_FEATURES

    flat = torch.tensor([150, 130, 100], dtype=torch.uint8).expand(1, 64, 64, 3)
    key = features(flat)[0, list(KEY_FEATURES)]
    assert torch.allclose(key[0:3], key[3:6], atol=1e-3)
    assert torch.allclose(key[0:3], torch.tensor([150, 130, 100]) / 255, atol=3e-3)
    assert float(key[6:13].max() - key[6:13].min()) < 0.01
    assert float(key[14]) > 0.1 and float(key[16]) > 0 > float(key[17])


def test_environment_step_is_rlcore_reward():
    ps = exposure_pairs(6)
    pool = _augment_pool(ps, np.arange(6), copies=1, strength=0.5, seed=0, env_size=64)
    idx = torch.arange(12)
    a = torch.rand(12, 12) * 0.6 - 0.3
    t = pool.pair[idx]
    edited = editor.apply_batch(pool.before[idx], (a * 100).round())
    expected = reward.reward(pool.before[idx], edited, pool.target[t])
    assert torch.allclose(pool.step(idx, a), expected, atol=1e-4)


def test_augmented_targets_unchanged_or_emulated():
    ps = exposure_pairs(8)
    plain = _augment_pool(ps, np.arange(8), copies=2, strength=1.0, seed=0, env_size=64)
    emulated = _augment_pool(
        ps, np.arange(8), copies=2, strength=1.0, seed=0, env_size=64, aug_target="emulated"
    )
    assert torch.equal(plain.before, emulated.before)  # the same jittered states
    assert torch.equal(plain.target[plain.pair], emulated.target[emulated.pair][:8].repeat(3, 1, 1, 1))
    # originals keep their afters; jittered copies get targets of their own
    assert torch.equal(emulated.target[emulated.pair][:8], torch.from_numpy(ps.after))
    assert not torch.equal(emulated.target[emulated.pair][8:], plain.target[plain.pair][8:])
    # face weights follow each state to its own target
    w = np.random.default_rng(0).uniform(0.5, 2.0, (8, 64, 64)).astype(np.float32)
    weighted = _augment_pool(
        PairSet(ps.before, ps.after, w), np.arange(8), copies=2, strength=1.0, seed=0, env_size=64,
        aug_target="emulated",
    )  # fmt: skip
    assert torch.equal(weighted.weights[weighted.pair], torch.from_numpy(w).repeat(3, 1, 1))
    with pytest.raises(ValueError, match="aug_target"):
        _augment_pool(ps, np.arange(8), copies=1, strength=1.0, seed=0, env_size=64, aug_target="nonsense")


def test_the_model_sees_the_whole_photo_and_the_reward_compares_the_region():
    ps = exposure_pairs(8)
    # the whole photo: the region on the left, something else on the right
    view = np.concatenate([ps.before[:, :, :32], ps.before[::-1, :, 32:]], axis=2)
    cropped = PairSet(ps.before, ps.after, view=view)
    plain = _augment_pool(ps, np.arange(8), copies=2, strength=1.0, seed=0, env_size=32)
    pool = _augment_pool(cropped, np.arange(8), copies=2, strength=1.0, seed=0, env_size=32)
    assert torch.equal(pool.before, plain.before) and torch.equal(pool.baseline, plain.baseline)
    # each jittered copy of the whole photo got its region's jitter
    assert torch.equal(pool.view[:8], torch.from_numpy(view))
    assert torch.equal(pool.view[:, :, :32], pool.before[:, :, :32])
    assert torch.equal(pool.feats, features(pool.view)) and not torch.equal(pool.feats, plain.feats)
    assert np.array_equal(cropped.subset([2, 3]).views, view[2:4])
    res = finetune(cropped, base=fresh_base(), seed=0, max_steps=2, seconds=60, config=Config(**FAST))
    val = np.asarray(res.val_idx)
    assert validation_delta_e(res.model, cropped, val) != validation_delta_e(res.model, ps, val)


def test_a_pools_head_is_the_pool_of_its_first_states():
    ps = exposure_pairs(8)
    view = np.concatenate([ps.before[:, :, :32], ps.before[::-1, :, 32:]], axis=2)
    pool = _augment_pool(PairSet(ps.before, ps.after, view=view), np.arange(8), 3, 1.0, 0, 32, "emulated")
    head = pool.head(8 * 2)  # the originals and the first round of copies
    first = _Pool(pool.before[:16], pool.pair[:16], pool.original[:16], pool.target, pool.weights, 32,
                  pool.view[:16])  # fmt: skip
    assert len(head) == 16 and pool.head(len(pool)) is pool
    for name in ("before", "pair", "original", "view", "feats", "conv", "before_env", "baseline",
                 "target_lab_env", "idx_original", "idx_augmented"):  # fmt: skip
        assert torch.equal(getattr(head, name), getattr(first, name)), name


def test_many_pairs_get_fewer_augmented_copies():
    ps = exposure_pairs(24)
    cfg = Config(**{**FAST, "aug_copies": 16, "aug_states_max": 40})
    res = finetune(ps, base=fresh_base(), seed=0, max_steps=2, seconds=60, config=cfg)
    assert res.metrics["train_pairs"] == 19 and res.metrics["aug_copies"] == 2  # 40 // 19
    res = finetune(ps.subset(range(6)), base=fresh_base(), seed=0, max_steps=2, seconds=60, config=cfg)
    assert res.metrics["aug_copies"] == 8  # 40 // 5


def test_finetune_learns_a_known_edit():
    ps = exposure_pairs(24, exposure=40, temperature=30)
    res = finetune(ps, base=fresh_base(), seed=0, max_steps=300, seconds=120, config=Config(**FAST))
    m = res.metrics
    assert m["train_pairs"] + m["val_pairs"] == 24 and m["val_pairs"] >= 1
    assert m["val_delta_e_personal"] < 0.5 * m["val_delta_e_no_edit"], m
    # and it generalises to new photos with the same edit
    test = exposure_pairs(10, seed=99, exposure=40, temperature=30)
    pred = res.model.predict_thumbnails(test.before)
    assert pred.shape == (10, 12) and pred.dtype.kind == "i"
    edited = editor.apply_batch(torch.from_numpy(test.before), torch.from_numpy(pred))
    t_lab = reward.srgb_to_lab(torch.from_numpy(test.after))
    de_model = reward.mean_delta_e(edited, t_lab).mean()
    de_none = reward.mean_delta_e(torch.from_numpy(test.before), t_lab).mean()
    assert de_model < 0.6 * de_none
    assert pred[:, editor.ADJUSTMENTS.index("exposure")].mean() > 15
    assert [s for s, _ in res.curve] == sorted(s for s, _ in res.curve)


def test_deterministic_for_a_seed():
    ps = exposure_pairs(10)
    runs = [
        finetune(ps, base=fresh_base(), seed=s, max_steps=25, seconds=60, config=Config(**FAST))
        for s in (3, 3, 4)
    ]
    a, b, c = (r.model.predict_thumbnails(ps.before) for r in runs)
    assert runs[0].curve == runs[1].curve
    assert np.array_equal(a, b)
    for k, v in runs[0].model.actor.state_dict().items():
        assert torch.equal(v, runs[1].model.actor.state_dict()[k])
    assert runs[0].curve != runs[2].curve


def test_resume_from_checkpoint_continues_the_same_run(tmp_path):
    ps = exposure_pairs(10)
    cfg = Config(**FAST)
    full = finetune(ps, base=fresh_base(), seed=1, max_steps=40, seconds=60, config=cfg)

    ckpt = tmp_path / "job.ckpt"
    instant_polls = []  # the instant model's steps poll first (the same with seconds=0), then each RL step
    finetune(ps, base=fresh_base(), seed=1, seconds=0, should_stop=lambda: instant_polls.append(1) and False,
             config=cfg)  # fmt: skip
    polls = {"n": 0}

    def stop_after_20():
        polls["n"] += 1
        return polls["n"] > len(instant_polls) + 20  # polled before each step: stops after step 20

    with pytest.raises(Cancelled):
        finetune(ps, base=fresh_base(), seed=1, max_steps=40, seconds=60, checkpoint_path=ckpt,
                 should_stop=stop_after_20, config=cfg)  # fmt: skip
    assert ckpt.exists()
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 20 and state["size"] == 20 * cfg.batch_envs
    seen = []
    resumed = finetune(ps, base=fresh_base(), seed=1, max_steps=40, seconds=60, checkpoint_path=ckpt,
                       on_progress=seen.append, config=cfg)  # fmt: skip
    assert resumed.metrics["steps"] == 40
    assert resumed.curve == full.curve
    for k, v in full.model.actor.state_dict().items():
        assert torch.equal(v, resumed.model.actor.state_dict()[k]), k
    # a checkpoint of other data is ignored: a fresh run, not a crash
    other = exposure_pairs(10, seed=5)
    res = finetune(
        other, base=fresh_base(), seed=1, max_steps=5, seconds=60, checkpoint_path=ckpt, config=cfg
    )
    assert res.metrics["steps"] == 5


def test_should_stop_raises_cancelled_quickly():
    ps = exposure_pairs(6)
    t = time.monotonic()
    with pytest.raises(Cancelled):
        finetune(ps, base=fresh_base(), seconds=60, should_stop=lambda: True, config=Config(**FAST))
    assert time.monotonic() - t < 10
    with pytest.raises(Cancelled):  # the instant model (seconds=0) is cancellable too
        finetune(ps, base=fresh_base(), seconds=0, should_stop=lambda: True, config=Config(**FAST))


def test_the_instant_model_reports_progress_and_heeds_a_cancel_through_its_steps():
    # its searches and fits take tens of seconds with many pairs: progress, and the worker's heartbeat
    # (which rides on should_stop), must keep coming through them, and a cancel must not wait for them
    ps = exposure_pairs(10)
    cfg = Config(**FAST)
    seen: list[Progress] = []
    calls = []
    finetune(ps, base=fresh_base(), seconds=0, seed=0, on_progress=seen.append,
             should_stop=lambda: calls.append(1) is not None, config=cfg)  # fmt: skip
    assert len(calls) >= cfg.search_iters + cfg.instant_copy_iters  # every generation of both searches
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert len({round(f, 2) for f in fractions if 0 < f < 1}) >= 4  # each step's start and end at least
    # at once an ETA: the work its steps are given, at one idle core's pace until a step shows this one's
    estimate = instant_step_seconds(cfg, n_pairs=10, linear_prior=False, inverse=False)
    assert seen[0].eta_seconds == pytest.approx(sum(estimate.values()))
    assert all(p.eta_seconds >= 0 for p in seen)

    calls.clear()
    with pytest.raises(Cancelled):  # asked during the first search: stops there
        finetune(ps, base=fresh_base(), seconds=0, seed=0, should_stop=lambda: len(calls) > 5 or calls.append(1),
                 config=cfg)  # fmt: skip
    assert len(calls) == 6


def test_the_steps_before_rl_report_the_work_done_and_an_eta_at_the_pace_so_far():
    steps = {"search": 2.0, "fits": 6.0}  # estimated seconds
    instant = _SetupProgress(0, None, Config(), 0.0, None, None, steps)
    assert instant.fraction_and_eta(0.0) == (0.0, 8.0)  # before any work: the estimate itself
    instant.begin("search")
    instant.end()
    # the search took twice its estimate: the rest is expected to as well
    assert instant.fraction_and_eta(4.0) == (0.25, 12.0)
    tick = instant.begin("fits", units=3)
    tick()
    assert instant.fraction_and_eta(8.0) == (0.5, 8.0)
    # with a budget: its clock, as RL's, unless the instant model alone is expected to outlast it
    within = _SetupProgress(60, None, Config(reserve_s=1.0), 0.0, None, None, steps)
    assert within.fraction_and_eta(1.0) == (pytest.approx(1 / 59), 59.0)
    beyond = _SetupProgress(10, None, Config(), 0.0, None, None, {"search": 20.0, "fits": 60.0})
    assert beyond.fraction_and_eta(5.0) == (pytest.approx(5 / 85), 80.0)


def test_progress_and_time_budget():
    ps = exposure_pairs(8)
    seen: list[Progress] = []
    t = time.monotonic()
    # no per-pair search: the instant model it feeds comes first and, on a loaded machine, could take the
    # whole 4 s (this test is about RL's progress and its budget, not about the instant model)
    cfg = Config(**{**FAST, "search_iters": 0})
    res = finetune(ps, base=fresh_base(), seconds=4, seed=0, on_progress=seen.append, config=cfg)
    took = time.monotonic() - t
    assert took < 6.5, took
    assert res.metrics["steps"] > 5
    assert seen and seen[-1].fraction == 1.0
    assert seen[0].step == 0 and seen[0].fraction < 0.01  # reported before the pool is built
    assert all(0 <= p.fraction <= 1 for p in seen)
    assert all(0 <= p.epsilon <= 1 for p in seen)
    times = len(seen) / max(took, 1e-6)
    assert times <= 12  # at most ~10 per second
    assert {"val_delta_e_no_edit", "val_delta_e_base", "val_delta_e_personal", "steps", "train_pairs",
            "val_pairs", "seconds"} <= set(res.metrics)  # fmt: skip


def test_face_weights_flow_into_the_reward():
    ps = exposure_pairs(8)
    w = np.ones((8, 64, 64), np.float32)
    w[:, :16, :16] = 20.0
    weighted = PairSet(ps.before, ps.after, w)
    pool = _augment_pool(weighted, np.arange(8), copies=0, strength=0.5, seed=0, env_size=64)
    idx = torch.arange(8)
    a = torch.zeros(8, 12)
    a[:, 0] = 0.5
    edited = editor.apply_batch(pool.before, (a * 100).round())
    expected = reward.reward(pool.before, edited, pool.target, torch.from_numpy(w))
    assert torch.allclose(pool.step(idx, a), expected, atol=1e-4)
    res = finetune(
        weighted, base=fresh_base(), seed=0, max_steps=5, seconds=60, face_weight=2.0, config=Config(**FAST)
    )
    assert res.metrics["face_weight"] == 2.0


def test_too_few_pairs_is_an_error():
    ps = exposure_pairs(2)
    with pytest.raises(ValueError):
        finetune(ps.subset([0]), base=fresh_base(), seconds=5)


def wrecking_base(seed: int = 0) -> PersonalModel:
    """A base whose every suggestion is a heavy edit: exposure and tint pushed far, whatever the photo."""
    base = fresh_base(seed)
    with torch.no_grad():
        last = base.actor.mlp[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[editor.ADJUSTMENTS.index("exposure")] = -2.0
        last.bias[editor.ADJUSTMENTS.index("tint")] = 2.0
    return base


def test_a_published_model_never_validates_worse_than_no_edit():
    """Pairs with no edit at all, a base that wrecks photos, no time to learn: calibration falls back."""
    before = scenes(10, 5)
    pairs = PairSet(before=before, after=before.copy())
    res = finetune(pairs, base=wrecking_base(), seed=0, max_steps=2, config=Config(**FAST))
    m = res.metrics
    assert m["val_delta_e_unscaled"] > m["val_delta_e_no_edit"] + 1.0
    assert m["val_delta_e_personal"] <= m["val_delta_e_no_edit"]
    assert (m["strength"], m["calibration"]) == (0.0, "no_edit")
    sliders = res.model.predict_thumbnails(before)
    assert not sliders.any(), "a model calibrated to strength 0 suggests no edit"


def test_calibration_keeps_strength_1_unless_the_gain_is_more_than_noise():
    """Two validation pairs, one much better at 1.5 and one worse: a lucky pair must not rescale every
    photo. Ten pairs that all gain at 1.5: rescaled."""
    from rlcore.agent import STRENGTHS, _Val, calibrate_strength

    exposure = editor.ADJUSTMENTS.index("exposure")
    before = scenes(12, 11)
    sliders = torch.zeros(12, 12)
    sliders[:, exposure] = 45.0
    sliders[1, exposure] = 15.0  # this editor barely brightened the second photo
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()

    class PlusThirty(torch.nn.Module):
        def forward(self, feats, conv_x):
            a = torch.zeros(len(feats), 12)
            a[:, exposure] = 0.3
            return a

    two = _Val(torch.from_numpy(before[:2]), torch.from_numpy(after[:2]), None)
    strength, scores = calibrate_strength(two, PlusThirty())
    assert min(scores, key=scores.get) != 1.0 and strength == 1.0
    ten = _Val(torch.from_numpy(before[2:]), torch.from_numpy(after[2:]), None)
    strength, scores = calibrate_strength(ten, PlusThirty())
    assert strength == 1.5 == min(scores, key=scores.get)
    four = _Val(torch.from_numpy(before[2:6]), torch.from_numpy(after[2:6]), None)
    strength, scores = calibrate_strength(four, PlusThirty())
    assert min(scores, key=scores.get) == 1.5 and strength == 1.0, "four pairs that agree are still four"
    # the instant model's folds are evidence too: the two pairs plus eight other photos that all gain
    strength, scores = calibrate_strength(two, PlusThirty(), [(PlusThirty(), ten)])
    assert strength == 1.5 and set(scores) == set(STRENGTHS)
    assert scores[1.0] == calibrate_strength(two, PlusThirty())[1][1.0], "published scores: validation's"


def test_calibration_on_other_photos_never_publishes_worse_than_no_edit_on_validation():
    from rlcore.agent import _Val, calibrate_strength

    exposure = editor.ADJUSTMENTS.index("exposure")
    before = scenes(10, 13)
    brightened = editor.apply_batch(
        torch.from_numpy(before), torch.full((10, 1), 45.0) * torch.eye(12)[exposure]
    )

    class PlusThirty(torch.nn.Module):
        def forward(self, feats, conv_x):
            return torch.zeros(len(feats), 12).index_fill_(1, torch.tensor([exposure]), 0.3)

    unedited = _Val(torch.from_numpy(before[:2]), torch.from_numpy(before[:2]), None)
    others = _Val(torch.from_numpy(before[2:]), brightened[2:], None)
    strength, scores = calibrate_strength(unedited, PlusThirty(), [(PlusThirty(), others)])
    assert strength == 0.0 and scores[0.0] < scores[1.0], "validation says any edit hurts: no edit"


def test_folds_group_similar_photos():
    """Crops of one photo look alike: the folds the instant model chooses its form on keep each photo's
    crops together, so a fold's photos are new to the fit that is scored on them."""
    from PIL import Image

    from rlcore.agent import _augment_pool, similar_photo_folds

    photos = [np.asarray(Image.fromarray(p).resize((192, 192))) for p in scenes(3, 12)]
    gen = np.random.default_rng(0)
    crops, source = [], []
    for i, p in enumerate(photos):
        for _ in range(6):
            y, x = gen.integers(0, 48, 2)
            crops.append(np.asarray(Image.fromarray(p[y : y + 144, x : x + 144]).resize((64, 64))))
            source.append(i)
    before = np.stack(crops)
    pool = _augment_pool(PairSet(before, before.copy()), np.arange(18), 2, 1.0, 0, 16)
    folds = similar_photo_folds(pool, 3, seed=0)
    assert len(folds) == 3
    source = torch.tensor(source)
    for fold in folds:
        held = torch.nonzero(fold.held_out[:18]).squeeze(1)
        assert len(torch.unique(source[held])) == 1 and len(held) == 6
        assert torch.equal(fold.held_out[18:36], fold.held_out[:18])  # each copy goes with its before
        assert len(fold.test.before) == 6
    four = _augment_pool(PairSet(before[:4], before[:4].copy()), np.arange(4), 2, 1.0, 0, 16)
    assert [len(f.test.before) for f in similar_photo_folds(four, 3, seed=0)] == [2, 2], "4 pairs: 2 folds"
    three = _augment_pool(PairSet(before[:3], before[:3].copy()), np.arange(3), 2, 1.0, 0, 16)
    assert similar_photo_folds(three, 3, seed=0) == [], "fewer than two pairs a fold: no cross-validation"


def test_calibrated_strength_travels_with_the_model_file_and_scales_its_sliders():
    from rlcore.modelfile import load_model, model_bytes

    pairs = exposure_pairs(16, seed=2)
    res = finetune(pairs, base=fresh_base(), seed=0, max_steps=60, config=Config(**FAST))
    assert res.metrics["calibration"] in ("kept", "scaled") and res.metrics["strength"] > 0
    loaded = load_model(model_bytes(res.model))
    assert loaded.strength == res.metrics["strength"]
    half = load_model(model_bytes(res.model))
    half.metadata["strength"] = loaded.strength / 2
    full_a, half_a = loaded.predict_actions(pairs.before), half.predict_actions(pairs.before)
    assert torch.allclose(half_a * 2, full_a, atol=1e-6)
    # validation_delta_e compares any model on the job's validation pairs, as fine-tuning measured it
    from rlcore.agent import validation_delta_e

    assert validation_delta_e(loaded, pairs, res.val_idx) == pytest.approx(
        res.metrics["val_delta_e_personal"], abs=1e-3
    )


def test_distillation_blends_a_linear_policy_that_carries_an_adaptive_edit_to_new_photos():
    """A style whose exposure depends on the photo (brighten dark photos, darken bright ones): the linear
    policy fitted to the search's best actions follows that dependence on photos it never saw."""
    from rlcore.agent import _Val, distill
    from rlcore.networks import DistilledActor, LinearPolicy

    before = scenes(40, 7)
    mean_grey = before.reshape(40, -1).mean(1)
    exposure = np.clip((110 - mean_grey) * 1.2, -100, 100).round()
    sliders = torch.zeros(40, 12)
    sliders[:, editor.ADJUSTMENTS.index("exposure")] = torch.from_numpy(exposure).float()
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()
    feats = features(before[:30])
    best_a = sliders[:30] / 100  # as if the search had found each state's exact sliders
    val = _Val(torch.from_numpy(before[30:]), torch.from_numpy(after[30:]), None)
    no_edit_actor = Actor()
    with torch.no_grad():
        no_edit_actor.mlp[-1].weight.zero_()
    conv = conv_input(before[:30])
    blended, form = distill(no_edit_actor, feats, conv, best_a, torch.ones(30), val, mix=1.0)
    assert (
        isinstance(blended, DistilledActor) and isinstance(blended.linear, LinearPolicy) and form.penalty > 0
    )
    assert val.delta_e(blended) < 0.5 * val.delta_e(no_edit_actor)
    with torch.no_grad():
        predicted = blended(val.feats, val.conv)[:, editor.ADJUSTMENTS.index("exposure")] * 100
    assert np.corrcoef(predicted.numpy(), exposure[30:])[0, 1] > 0.8
    # nothing to distil (no state improved on no edit): the actor is kept
    assert distill(no_edit_actor, feats, conv, best_a, torch.zeros(30), val, mix=0.5) == (None, None)


def test_distillation_prefers_the_largest_penalty_the_best_score_is_not_clearly_ahead_of():
    """One slider vector for every photo (a preset): every penalty fits it alike, and with cross-validation
    folds the served form is the most regularised one (the one-standard-error rule), not whichever came
    first in a tie."""
    from rlcore.agent import RIDGE_LAMBDAS, _Fold, _Val, distill

    before = scenes(30, 5)
    sliders = torch.zeros(30, 12)
    sliders[:, editor.ADJUSTMENTS.index("exposure")] = 40.0
    sliders[:, editor.ADJUSTMENTS.index("fade")] = 25.0
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()
    val = _Val(torch.from_numpy(before[20:]), torch.from_numpy(after[20:]), None)
    no_edit_actor = Actor()
    with torch.no_grad():
        no_edit_actor.mlp[-1].weight.zero_()
    halves = [torch.arange(20) < 10, torch.arange(20) >= 10]
    folds = [_Fold(h, _Val(torch.from_numpy(before[:20][h.numpy()]), torch.from_numpy(after[:20][h.numpy()]), None))
             for h in halves]  # fmt: skip
    policy, form = distill(
        no_edit_actor, features(before[:20]), conv_input(before[:20]), sliders[:20] / 100, torch.ones(20), val,
        mix=1.0, folds=folds,
    )  # fmt: skip
    assert form.penalty == max(RIDGE_LAMBDAS)
    assert val.delta_e(policy) < 0.5


def test_distillation_on_the_key_statistics_alone_carries_an_adaptive_edit_from_a_few_photos():
    """Eight photos whose exposure was set from their brightness: a fit on all 61 statistics follows what
    else those eight have in common; on the key statistics alone it finds the rule, and is served only
    because it validates clearly better (with the option off, the fit on every statistic is served)."""
    from rlcore.agent import _Val, distill
    from rlcore.features import KEY_FEATURES

    before = scenes(40, 3)
    exposure = np.clip((110 - before.reshape(40, -1).mean(1)) * 1.2, -100, 100).round()
    sliders = torch.zeros(40, 12)
    sliders[:, editor.ADJUSTMENTS.index("exposure")] = torch.from_numpy(exposure).float()
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()
    val = _Val(torch.from_numpy(before[30:]), torch.from_numpy(after[30:]), None)
    no_edit_actor = Actor()
    with torch.no_grad():
        no_edit_actor.mlp[-1].weight.zero_()
    fit = (no_edit_actor, features(before[:8]), conv_input(before[:8]), sliders[:8] / 100, torch.ones(8), val)
    every, _ = distill(*fit, mix=1.0)
    key, _ = distill(*fit, mix=1.0, key_statistics=True)
    others = [i for i in range(features(before[:1]).shape[1]) if i not in KEY_FEATURES]
    assert float(key.linear.linear.weight[:, others].abs().max()) == 0.0
    assert float(every.linear.linear.weight[:, others].abs().max()) > 0.0
    assert val.delta_e(key) < 0.5 * val.delta_e(every)


def test_distillation_corrects_a_good_actor_that_is_off_by_an_offset():
    """An actor that follows the photo (a step in exposure no linear policy fits) but misses the editor's
    extra +30 contrast: the served policy is the actor plus a linear correction, which keeps the actor's
    per-photo exposure and adds the offset."""
    from rlcore.agent import _Val, distill
    from rlcore.networks import DistilledActor

    exposure_i, contrast_i = editor.ADJUSTMENTS.index("exposure"), editor.ADJUSTMENTS.index("contrast")

    class StepExposure(torch.nn.Module):  # -40 exposure on bright photos, +40 on dark ones; no contrast
        def forward(self, feats, conv_x, drop=0.0, noise=0.0):
            grey = (conv_x.mean((1, 2, 3)) + 0.5) * 255
            a = torch.zeros(len(feats), 12)
            a[:, exposure_i] = torch.where(grey > 110, -0.4, 0.4)
            return a

    before = scenes(60, 8)
    actor = StepExposure()
    sliders = actor(features(before), conv_input(before)) * 100
    sliders[:, contrast_i] = 30.0
    after = editor.apply_batch(torch.from_numpy(before), sliders).numpy()
    assert 10 < int((sliders[:, exposure_i] > 0).sum()) < 50, "both sides of the step among the photos"
    val = _Val(torch.from_numpy(before[40:]), torch.from_numpy(after[40:]), None)
    combined, form = distill(actor, features(before[:40]), conv_input(before[:40]), sliders[:40] / 100,
                             torch.ones(40), val, mix=0.5)  # fmt: skip
    assert isinstance(combined, DistilledActor) and float(combined.actor_share) == 1.0 and form.corrects_actor
    with torch.no_grad():
        predicted = combined(val.feats, val.conv) * 100
    assert predicted[:, contrast_i].sub(30).abs().mean() < 6
    assert predicted[:, exposure_i].sub(sliders[40:, exposure_i]).abs().mean() < 10


def test_a_distilled_file_from_before_the_actor_share_blends_as_it_did():
    from rlcore.modelfile import load_model, model_bytes
    from rlcore.networks import DistilledActor, LinearPolicy

    linear = LinearPolicy()
    torch.nn.init.normal_(linear.linear.weight, std=0.1)
    model = PersonalModel(DistilledActor(fresh_base().actor, linear, mix=0.5), None)
    x = scenes(4, 9)
    expected = model.predict_actions(x)
    del model.actor._buffers["actor_share"]  # as files written before it existed
    loaded = load_model(model_bytes(model))
    assert float(loaded.actor.actor_share) == 0.5
    assert torch.allclose(loaded.predict_actions(x), expected, atol=1e-6)


def test_a_hedged_policy_is_the_mean_of_two_policies_and_survives_the_file():
    """networks.hedged: share * one policy + (1 - share) * another, distilled or not, plain or style."""
    from rlcore.modelfile import load_model, model_bytes
    from rlcore.networks import DistilledActor, LinearPolicy, StyleActor, StylePolicy, hedged

    x = scenes(4, 9)
    feats, conv = features(x), conv_input(x)
    style = lambda seed: StyleActor(StylePolicy(N_FEATURES, 4, 16), torch.randn(1, 4))  # noqa: E731
    for make in (lambda seed: fresh_base(seed).actor, style):
        torch.manual_seed(1)
        linear = LinearPolicy()
        torch.nn.init.normal_(linear.linear.weight, std=0.1)
        rl, instant = DistilledActor(make(1), linear, mix=0.5), make(2)
        for one, other in (
            (rl, instant),
            (instant, DistilledActor(make(3), linear, mix=1.0, actor_share=0.0)),
        ):
            both = hedged(one, other, 0.5)
            with torch.no_grad():
                expected = 0.5 * one.eval()(feats, conv) + 0.5 * other.eval()(feats, conv)
                assert torch.allclose(both(feats, conv), expected, atol=1e-6)
            model = PersonalModel(both, None, metadata={"strength": 0.8})
            loaded = load_model(model_bytes(model))
            assert torch.allclose(loaded.predict_actions(x), model.predict_actions(x), atol=1e-6)
        with pytest.raises(ValueError, match="not hedged again"):
            hedged(both, instant, 0.5)


def test_two_distilled_forms_blend_into_one_policy_that_survives_the_file():
    """networks.blended: share * one distilled policy + (1 - share) * another of the same actor, as one
    linear policy on raw statistics (their standardisations differ); the key statistics' evidence ramps the
    share from 0 to 1 around the threshold that used to switch (agent._evidence_share)."""
    from rlcore.agent import STRENGTH_MARGIN, _evidence_share
    from rlcore.modelfile import load_model, model_bytes
    from rlcore.networks import DistilledActor, LinearPolicy, blended

    x = scenes(6, 4)
    feats, conv = features(x), conv_input(x)
    actor = fresh_base(1).actor
    policies = []
    for seed, (mix, actor_share) in enumerate(((1.0, 0.0), (0.5, 0.5))):
        torch.manual_seed(seed)
        linear = LinearPolicy()
        torch.nn.init.normal_(linear.linear.weight, std=0.02)
        linear.feat_mean.normal_()
        linear.feat_std.uniform_(0.5, 2.0)
        policies.append(DistilledActor(actor, linear, mix=mix, actor_share=actor_share).eval())
    for share in (0.0, 0.3, 1.0):
        both = blended(*policies, share)
        with torch.no_grad():
            expected = share * policies[0](feats, conv) + (1 - share) * policies[1](feats, conv)
            assert torch.allclose(both(feats, conv), expected, atol=1e-5)
    loaded = load_model(model_bytes(PersonalModel(both, None)))
    assert torch.allclose(loaded.predict_actions(x), PersonalModel(both, None).predict_actions(x), atol=1e-6)
    with pytest.raises(ValueError, match="one actor"):
        blended(policies[0], DistilledActor(fresh_base(2).actor, LinearPolicy()), 0.5)

    old = torch.full((8,), 5.0)
    assert _evidence_share(old, old) == 0.0 and _evidence_share(old - 1.0, old) == 1.0
    # a half where it used to switch from one to the other
    assert _evidence_share(old - STRENGTH_MARGIN, old) == pytest.approx(0.5, abs=1e-3)
    assert _evidence_share(old - 0.75 * STRENGTH_MARGIN, old) == pytest.approx(0.25, abs=1e-3)


def test_a_blend_reports_the_penalty_of_its_larger_part():
    from rlcore.agent import BlendedForms, DistillForm

    key, prior = DistillForm(0.0, 1.0, 3.0, key_only=True), DistillForm(0.0, 1.0, 1000.0, prior=True)
    assert BlendedForms(key, prior, 0.7).penalty == 3.0 and BlendedForms(key, prior, 0.3).penalty == 1000.0
    assert BlendedForms(key, None, 0.7).penalty == 3.0
    assert BlendedForms(key, None, 0.3).penalty is None  # mostly the actor alone, which has none


def test_the_instant_model_fits_the_searched_actions_of_the_pairs():
    """seconds=0: no RL, but each training pair's black-box search gives the linear policy its data."""
    pairs = exposure_pairs(20, seed=5)
    res = finetune(pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**FAST))
    m = res.metrics
    assert m["steps"] == 0 and m["distill_lambda"] is not None
    assert m["val_delta_e_personal"] < 0.6 * m["val_delta_e_no_edit"]
    off = finetune(pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**FAST, search_iters=0))
    assert (
        off.metrics["distill_lambda"] is None
        and off.metrics["val_delta_e_personal"] > m["val_delta_e_personal"]
    )


def test_with_many_pairs_the_instant_model_scores_its_forms_on_a_sample_of_them(monkeypatch):
    # each form's edits of every validation pair and fold were most of its time with many pairs (33 s of
    # 57 at 1,000 pairs): it scores them on at most instant_scored_max pairs, and up to that on all of them
    pairs = exposure_pairs(20, seed=5)
    edited = []
    per_pair = _Val.per_pair

    def counted(self, actor, strength=1.0):
        edited.append(len(self))
        return per_pair(self, actor, strength)

    monkeypatch.setattr(_Val, "per_pair", counted)

    def run(cap):
        edited.clear()
        res = finetune(
            pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**FAST, instant_scored_max=cap)
        )
        return res, sum(edited)

    (every, every_edits), (at_cap, _), (sampled, sampled_edits) = run(10**6), run(20), run(8)
    views = torch.from_numpy(pairs.before)
    assert torch.equal(every.model.predict_actions(views), at_cap.model.predict_actions(views))
    assert sampled_edits < 0.6 * every_edits  # 8 of 20 pairs for every form; the rest (no edit, ...) alike
    m = sampled.metrics
    assert m["distill_lambda"] is not None and m["val_delta_e_personal"] < 0.6 * m["val_delta_e_no_edit"]
    # and its estimated time knows it
    cfg = Config()
    assert (
        instant_step_seconds(cfg, 10_000, True, True)["fits"]
        == instant_step_seconds(cfg, 200, True, True)["fits"]
    )


def test_the_instant_model_scores_its_forms_on_smaller_copies_and_validates_at_full_size(monkeypatch):
    # the forms' edits of the validation pairs and folds were most of the instant model's time: they are
    # made at instant_score_size, while the model reads the full thumbnails and its metrics stay at 64x64
    pairs = exposure_pairs(20, seed=5)
    val = _Val(torch.from_numpy(pairs.before[:6]), torch.from_numpy(pairs.after[:6]), None)
    small = val.resized(16)
    assert small.before.shape[1:3] == (16, 16) and torch.equal(small.feats, val.feats)
    assert torch.equal(small.conv, val.conv)
    assert val.resized(64) is val
    no_edit, small_no_edit = val.per_pair(None), small.per_pair(None)
    assert torch.allclose(small_no_edit, no_edit, rtol=0.15)  # the same photos, the same distance, roughly

    sizes = []
    per_pair = _Val.per_pair

    def recorded(self, actor, strength=1.0):
        sizes.append(self.before.shape[1])
        return per_pair(self, actor, strength)

    monkeypatch.setattr(_Val, "per_pair", recorded)
    res = finetune(pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**FAST, instant_score_size=16))
    assert sizes.count(16) > 20 and set(sizes) == {16, 64}  # every form at 16x16; validation at 64x64
    m = res.metrics
    assert m["distill_lambda"] is not None and m["val_delta_e_personal"] < 0.6 * m["val_delta_e_no_edit"]
    full = finetune(pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**FAST)).metrics
    assert m["val_delta_e_no_edit"] == full["val_delta_e_no_edit"]  # measured on the same 64x64 pairs
    fits = [instant_step_seconds(Config(instant_score_size=s), 200, True, True)["fits"] for s in (64, 16)]
    assert fits[1] < 0.5 * fits[0]  # and its estimated time knows it


def test_with_few_pairs_the_instant_models_copies_are_jittered_less_and_rls_are_not():
    pairs = exposure_pairs(12, seed=4)
    views = torch.from_numpy(pairs.before)

    def run(seconds=0, **fields):
        res = finetune(pairs, base=fresh_base(), seconds=seconds, seed=0, max_steps=None if seconds == 0 else 20,
                       config=Config(**{**FAST, "few_pairs": 100, "few_pairs_jitter": 0.5, **fields}))  # fmt: skip
        return res.model.predict_actions(views), res.curve

    mild, _ = run()
    # the same copies as jittering them all half as far, and not the same as full-strength copies
    assert torch.equal(mild, run(few_pairs=0, aug_strength=FAST["aug_strength"] / 2)[0])
    assert not torch.equal(mild, run(few_pairs=0)[0])
    # RL's own copies keep aug_strength: it learns as it does without the rule, not as with milder copies
    curve = run(600)[1]
    assert (
        curve == run(600, few_pairs=0)[1]
        and curve != run(600, few_pairs=0, aug_strength=FAST["aug_strength"] / 2)[1]
    )


def test_the_style_emulator_is_fitted_once_per_run_as_configured(monkeypatch):
    from rlcore import agent

    pairs = exposure_pairs(12, seed=4)
    views = torch.from_numpy(pairs.before)
    fits = []
    real_fit = agent.emulator.fit

    def recording_fit(*args, **kwargs):
        fits.append((kwargs["size"], kwargs["steps"]))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(agent.emulator, "fit", recording_fit)

    def run(**fields):
        fits.clear()
        res = finetune(pairs, base=fresh_base(), seconds=0, seed=0, config=Config(**{**FAST, **fields}))
        return res.model.predict_actions(views), list(fits)

    # one pool for the instant model and RL, or two (milder copies with few pairs): one fit either way
    shared, fitted = run(few_pairs=0, emulator_size=12, emulator_steps=50)
    assert fitted == [(12, 50)]
    assert run(few_pairs=100, few_pairs_jitter=0.5, emulator_size=12, emulator_steps=50)[1] == [(12, 50)]
    # the emulator's fit moves the copies' targets, so it makes another model
    assert not torch.equal(shared, run(few_pairs=0, emulator_size=8, emulator_steps=50)[0])
    assert not torch.equal(shared, run(few_pairs=0, emulator_size=12, emulator_steps=20)[0])


def test_finetune_serves_the_distilled_blend_only_when_it_validates_better_and_it_survives_the_file():
    from rlcore.modelfile import load_model, model_bytes
    from rlcore.networks import DistilledActor

    pairs = exposure_pairs(16, seed=3)
    res = finetune(pairs, base=fresh_base(), seed=0, max_steps=60, config=Config(**FAST))
    m = res.metrics
    assert m["val_delta_e_unscaled"] <= m["val_delta_e_actor"] + 1e-4
    assert isinstance(res.model.actor, DistilledActor) == (m["distill_lambda"] is not None)
    loaded = load_model(model_bytes(res.model))
    assert loaded.metadata["arch"]["distilled"] == isinstance(res.model.actor, DistilledActor)
    assert np.array_equal(loaded.predict_thumbnails(pairs.before), res.model.predict_thumbnails(pairs.before))
    # a fine-tuned model can be the base of the next fine-tuning; distill=False serves the RL actor alone
    again = finetune(pairs, base=loaded, seed=1, max_steps=5, config=Config(**FAST, distill=False))
    assert isinstance(again.model.actor, Actor) and again.metrics["distill_lambda"] is None


def test_consensus_search_gives_consistent_labels():
    """One look made by the same sliders on every photo: the search through the editor's consensus labels
    the pairs with sliders closer to each other (and to the look's own) than a search from no edit does,
    at as good a reward: the labels a linear policy can carry to other photos (Config.search_consensus)."""
    from rlcore.agent import _search_pairs

    before = scenes(16, 3)
    look = torch.zeros(16, 12)
    for name, value in (("exposure", 30), ("contrast", 25), ("saturation", 30), ("temperature", 20)):
        look[:, editor.ADJUSTMENTS.index(name)] = value
    after = editor.apply_batch(torch.from_numpy(before), look).numpy()
    pairs, idx = PairSet(before=before, after=after), np.arange(16)
    plain = _search_pairs(pairs, idx, Config(search_consensus=False), seed=0)
    consensus = _search_pairs(pairs, idx, Config(), seed=0)
    sliders = {"plain": plain[0] * 100, "consensus": consensus[0] * 100}
    spread = {k: float(a.std(0).mean()) for k, a in sliders.items()}
    error = {k: float((a - look).abs().mean()) for k, a in sliders.items()}
    assert spread["consensus"] < 0.7 * spread["plain"] and error["consensus"] < error["plain"], (
        spread,
        error,
    )
    assert float(consensus[1].mean()) >= 0.95 * float(plain[1].mean())


def test_slider_metric_weighs_the_sliders_that_change_the_photo():
    """The whites slider changes a bright photo and not a dark one; every metric is symmetric, positive
    and of trace 12 (the scale of the plain fit's identity, so that the penalties mean what they did)."""
    from rlcore.agent import slider_metric
    from rlcore.features import resize_u8

    whites = editor.ADJUSTMENTS.index("whites")
    base = scenes(8, 11).astype(np.float64)
    dark = torch.from_numpy((base * 0.35).astype(np.uint8))
    bright = torch.from_numpy(np.clip(base * 1.6 + 40, 0, 255).astype(np.uint8))
    metric = {
        k: slider_metric(resize_u8(x, 16), torch.zeros(8, 12))
        for k, x in (("dark", dark), ("bright", bright))
    }
    for m in metric.values():
        assert torch.allclose(m, m.transpose(1, 2)) and float(torch.linalg.eigvalsh(m).min()) > 0
        assert torch.allclose(m.diagonal(dim1=1, dim2=2).sum(1), torch.full((8,), 12.0), atol=1e-3)
    on_whites = {k: m[:, whites, whites] for k, m in metric.items()}
    assert float(on_whites["bright"].min()) > 2 * float(on_whites["dark"].max())


def test_a_metric_weighted_fit_ignores_labels_where_a_slider_does_nothing():
    """The whites of dark photos are arbitrary (the search may leave them anywhere: they change nothing);
    a plain fit follows them and misplaces the whites of bright photos, the fit weighted by each state's
    slider_metric does not (Config.distill_metric)."""
    from rlcore.agent import DistillForm, LabelMetric, fit_distilled, slider_metric
    from rlcore.features import resize_u8

    whites = editor.ADJUSTMENTS.index("whites")
    base = scenes(40, 11).astype(np.float64)
    dark = (base[10:30] * 0.35).astype(np.uint8)
    bright = np.clip(base * 1.6 + 40, 0, 255).astype(np.uint8)
    # fitted on the first 30 (10 bright, 20 dark), checked on the last 10 (bright)
    photos = np.concatenate([bright[:10], dark, bright[30:]])
    labels = torch.zeros(40, 12)
    labels[:, whites] = 0.4
    labels[10:30, whites] = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, 20)).float()
    feats, fit = features(photos), torch.arange(40) < 30
    metric = LabelMetric(slider_metric(resize_u8(torch.from_numpy(photos), 16), labels))
    error = {}
    for name, m in (("plain", None), ("metric", metric)):
        form = DistillForm(0.0, 1.0, 1.0, weighted=m is not None)
        policy = fit_distilled(Actor(), torch.zeros(40, 12), feats, labels, fit, form, m)
        with torch.no_grad():
            error[name] = float(policy.linear(feats[30:])[:, whites].sub(0.4).abs().mean())
    assert error["metric"] < 0.6 * error["plain"], error


def test_a_fit_shrunk_towards_the_linear_style_prior_follows_it_with_few_labels_and_the_labels_with_many():
    """DistillForm.prior: a large penalty leaves the prior's mean (how styles in general answer a photo),
    a small one the labels' own least-squares fit; weighted or not (Config.distill_prior)."""
    from rlcore.agent import DistillForm, LabelMetric, fit_distilled, slider_metric
    from rlcore.features import resize_u8
    from rlcore.networks import LinearStylePrior

    photos = scenes(60, 12)
    feats = features(photos)
    prior = LinearStylePrior()
    prior.feat_mean.copy_(feats.mean(0))
    prior.feat_std.copy_(feats.std(0) + 1e-6)
    gen = torch.Generator().manual_seed(0)
    prior.mean.copy_(torch.randn(N_FEATURES + 1, 12, generator=gen) * 0.02)
    xs = torch.cat([(feats - prior.feat_mean) / prior.feat_std, torch.ones(60, 1)], 1)
    editor_w = torch.randn(N_FEATURES + 1, 12, generator=gen) * 0.02
    labels = (xs @ editor_w).clamp(-1, 1)  # an editor's policy, linear in the statistics
    fit = torch.ones(60, dtype=torch.bool)
    metric = LabelMetric(slider_metric(resize_u8(torch.from_numpy(photos), 16), labels))
    for weighted in (False, True):
        near_prior = fit_distilled(Actor(), torch.zeros(60, 12), feats, labels, fit,
                                   DistillForm(0.0, 1.0, 1e7, weighted=weighted, prior=True), metric, prior)  # fmt: skip
        near_labels = fit_distilled(Actor(), torch.zeros(60, 12), feats, labels, fit,
                                    DistillForm(0.0, 1.0, 1e-6, weighted=weighted, prior=True), metric, prior)  # fmt: skip
        with torch.no_grad():
            assert torch.allclose(near_prior.linear(feats), (xs @ prior.mean).clamp(-1, 1), atol=1e-3)
            assert torch.allclose(near_labels.linear(feats), labels, atol=1e-3)


def test_features_are_the_statistics_they_name():
    """Each group of features against an independent computation: order statistics of the pixels and
    colour-science's CIELAB in float64. The lightness, a*b* and chroma quantiles come from histograms, so
    they may sit up to one bin (plus rounding) away from the exact order statistic."""
    import colour
    from skimage import data

    from rlcore.imageio import thumbnail

    thumbs = np.concatenate([scenes(3, 7), thumbnail(data.astronaut())[None], thumbnail(data.coffee())[None]])
    got = features(thumbs).numpy()
    q = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    for photo, f in zip(thumbs, got, strict=True):
        rgb = photo.reshape(-1, 3)
        p = len(rgb)
        rank = np.ceil((q - 1e-6) * p).astype(int) - 1  # the first value with a share >= q at or below it
        lab = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb / 255.0))
        L, a, b = lab[:, 0] / 100, lab[:, 1] / 50, lab[:, 2] / 50

        def near(values, expected, bin_width):
            return np.all(np.abs(values - expected) <= bin_width + 1e-3)

        np.testing.assert_allclose(f[0:21].reshape(7, 3), np.sort(rgb, 0)[rank] / 255.0, atol=1e-6)
        assert near(f[21:28], np.sort(L)[rank], 1 / 200)
        for start, channel in ((28, a), (33, b)):
            np.testing.assert_allclose(f[start : start + 2], [channel.mean(), channel.std(ddof=1)], atol=1e-3)
            assert near(f[start + 2 : start + 5], np.sort(channel)[rank[[1, 3, 5]]], 5.2 / 260)
        chroma = np.hypot(a, b)
        assert abs(f[38] - chroma.mean()) < 1e-3 and near(f[39:41], np.sort(chroma)[rank[[3, 5]]], 3 / 150)
        hist = np.bincount(np.minimum((L * 16).astype(int), 15), minlength=16) / p * 4
        assert np.abs(f[41:57] - hist).sum() <= 4 * 8 / p  # a few pixels on a bin's edge may fall either side
        np.testing.assert_allclose(
            f[57:59], [(rgb.max(1) >= 254).mean() * 4, (rgb.min(1) <= 1).mean() * 4], atol=1e-6
        )
        linear = colour.models.eotf_sRGB(rgb / 255.0).mean(0) + 1e-3
        np.testing.assert_allclose(f[59:61], np.log(linear[[0, 2]] / linear[1]), atol=1e-5)
