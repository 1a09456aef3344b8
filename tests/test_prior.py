"""The style prior: encoder, style-conditioned actor and critic, model files, instant and fine-tuned models.

Fast by design: untrained (random) priors on generated pairs; the benchmark (bench/bench_quality.py)
measures what a trained prior is worth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rlcore import reward
from rlcore.agent import Config, edit, finetune
from rlcore.data import random_crops
from rlcore.features import conv_input, features
from rlcore.modelfile import PersonalModel, load_model, model_bytes
from rlcore.networks import (
    DistilledActor,
    FixedStyleCritic,
    LinearPolicy,
    StyleActor,
    StyleCritic,
    StyleEncoder,
    StylePolicy,
    pair_features,
)
from rlcore.prior import (
    DEFAULT_STRENGTHS,
    DEFAULT_UNTOUCHED,
    MILD_DELTA_E,
    PriorConfig,
    check_crops,
    default_strength,
    linear_prior_from_labels,
    make_bank,
    rechoose_default,
    refit_linear_prior,
    search_best_actions,
    train_prior,
    upper_bound_of_mean,
)
from tests.test_agent import FAST, exposure_pairs, scenes

pytestmark = pytest.mark.filterwarnings("ignore")


def random_prior(seed: int = 0, style_dim: int = 8) -> PersonalModel:
    torch.manual_seed(seed)
    encoder = StyleEncoder(style_dim=style_dim, hidden=32)
    z0 = torch.zeros(1, style_dim)
    actor = StyleActor(StylePolicy(style_dim=style_dim, hidden=32), z0)
    critic = FixedStyleCritic(StyleCritic(style_dim=style_dim, hidden=32), z0)
    return PersonalModel(actor, critic, metadata={"kind": "prior"}, encoder=encoder)


def style_actor(model: PersonalModel) -> StyleActor:
    """The style policy with its code, inside a distilled model or not."""
    return model.actor.actor if isinstance(model.actor, DistilledActor) else model.actor


def test_the_encoder_reads_a_set_order_free_and_ignores_masked_pairs():
    enc = StyleEncoder(style_dim=8, hidden=32)
    b, a = scenes(6, 1), scenes(6, 2)
    pf = pair_features(features(b), features(a)).unsqueeze(0)
    z = enc(pf)
    assert z.shape == (1, 8)
    assert torch.allclose(enc(pf[:, torch.randperm(6)]), z, atol=1e-5)
    padded = torch.cat([pf, torch.randn(1, 3, pf.shape[-1]) * 50], 1)
    mask = torch.arange(9).unsqueeze(0) < 6
    assert torch.allclose(enc(padded, mask), z, atol=1e-5)
    assert torch.allclose(enc.encode(b, a), z, atol=1e-5)


def test_a_style_model_file_round_trips_with_its_encoder_and_plain_files_still_load():
    prior = random_prior()
    loaded = load_model(model_bytes(prior))
    assert loaded.metadata["format_version"] == 2 and loaded.metadata["arch"]["family"] == "style"
    assert loaded.encoder is not None
    x = scenes(4, 3)
    assert torch.equal(loaded.predict_actions(x), prior.predict_actions(x))
    b, a = scenes(5, 4), scenes(5, 5)
    assert torch.equal(loaded.encoder.encode(b, a), prior.encoder.encode(b, a))
    assert load_model(model_bytes(PersonalModel(loaded.actor, None))).encoder is None
    linear = LinearPolicy()
    torch.nn.init.normal_(linear.linear.weight, std=0.1)
    distilled = PersonalModel(DistilledActor(prior.actor, linear), prior.critic)
    again = load_model(model_bytes(distilled))
    assert again.metadata["arch"]["family"] == "style" and again.metadata["arch"]["distilled"]
    assert torch.equal(again.predict_actions(x), distilled.predict_actions(x))
    assert not torch.equal(again.predict_actions(x), prior.predict_actions(x))


def test_seconds_zero_gives_the_instant_model_and_training_never_ends_worse_than_it():
    pairs = exposure_pairs(16, seed=3)
    prior = random_prior()
    instant = finetune(pairs, base=prior, seconds=0, seed=0, config=Config(**FAST))
    m = instant.metrics
    assert m["steps"] == 0 and m["val_delta_e_personal"] <= m["val_delta_e_no_edit"]
    z = prior.encoder.encode(pairs.before[sorted(set(range(16)) - set(instant.val_idx))],
                             pairs.after[sorted(set(range(16)) - set(instant.val_idx))])  # fmt: skip
    assert torch.allclose(style_actor(instant.model).z, z, atol=1e-6), "the instant code is the pairs' code"
    tuned = finetune(pairs, base=prior, seed=0, max_steps=80, config=Config(**FAST))
    t = tuned.metrics
    assert t["val_delta_e_personal"] <= min(t["val_delta_e_instant"], t["val_delta_e_no_edit"]) + 1e-6
    assert t["val_delta_e_personal"] < t["val_delta_e_no_edit"] - 1.0, "RL learns the exposure edit"
    # Here the instant model (consensus labels) validates best and is served. With labels searched from no
    # edit it is weaker, RL's policy is served, and its code must be RL's own refinement of the pairs' code:
    # alone with rl_share 1, by default hedged with the instant model (half each, on every photo).
    weaker = dict(FAST, search_consensus=False)
    alone = finetune(pairs, base=prior, seed=0, max_steps=80, config=Config(**weaker, rl_share=1.0))
    assert alone.metrics["policy"] == "fine_tuned"
    tuned = finetune(pairs, base=prior, seed=0, max_steps=80, config=Config(**weaker))
    assert (
        tuned.metrics["policy"] == "hedged"
        and tuned.metrics["val_delta_e_unscaled"] <= tuned.metrics["val_delta_e_instant"]
    )
    assert torch.equal(style_actor(tuned.model).z, style_actor(alone.model).z)
    assert not torch.allclose(style_actor(tuned.model).z, style_actor(instant.model).z), "RL refines the code"
    rl = alone.model.actor
    instant_model = finetune(pairs, base=prior, seed=0, seconds=0, config=Config(**weaker)).model
    with torch.no_grad():
        x = (features(pairs.before), conv_input(pairs.before))
        expected = 0.5 * rl.eval()(*x) + 0.5 * instant_model.actor.eval()(*x)
        assert torch.allclose(tuned.model.actor(*x), expected, atol=1e-5)
    again = load_model(model_bytes(tuned.model))  # distilled or not, a style model file round-trips
    assert torch.equal(again.predict_actions(pairs.before), tuned.model.predict_actions(pairs.before))
    assert tuned.model.encoder is None and load_model(model_bytes(tuned.model)).metadata["kind"] == "personal"


def test_train_prior_keeps_its_best_validated_snapshot_and_is_deterministic():
    photos = [np.asarray(scenes(1, s)[0]) for s in range(6)]
    cfg = PriorConfig(n_styles=48, val_styles=8, photos_per_style=14, styles_per_batch=8, val_every=10,
                      context_max=8, actor_hidden=32, critic_hidden=32, encoder_hidden=16, style_dim=4,
                      linear_styles=6, linear_photos_per_style=12, linear_search_iters=4)  # fmt: skip
    res = train_prior(photos, seed=0, max_steps=60, config=cfg)
    assert [s for s, _ in res.curve] == list(range(0, 61, 10))
    best = min(v for _, v in res.curve)
    assert res.metrics["val_delta_e_prior"] == pytest.approx(best, abs=1e-4)
    model = load_model(model_bytes(res.model))
    assert model.metadata["kind"] == "prior" and model.encoder is not None
    assert res.metrics["default_untouched"] in DEFAULT_UNTOUCHED
    # a quarter of the photos (rounded) never enter the banks: the default is checked on them
    assert (res.metrics["photos"], res.metrics["check_photos"]) == (4, 2)
    assert model.metadata["strength"] in (0.0, *DEFAULT_STRENGTHS)
    assert model.linear_prior is not None, "the linear style prior travels in the file"
    for name, value in res.model.linear_prior.state_dict().items():
        assert torch.equal(model.linear_prior.state_dict()[name], value)
    again = train_prior(photos, seed=0, max_steps=60, config=cfg)
    assert again.curve == res.curve, "deterministic for a seed with max_steps"
    assert torch.equal(again.model.linear_prior.mean, model.linear_prior.mean)
    # the linear prior fitted again (another seed): the networks untouched, a new version of the file
    refitted = refit_linear_prior(model, photos, seed=1)
    assert refitted.metadata["linear_prior_refitted_from"] == model.metadata["model_id"]
    assert refitted.metadata["model_id"] != model.metadata["model_id"]
    assert not torch.equal(refitted.linear_prior.mean, model.linear_prior.mean)
    x = torch.from_numpy(scenes(4, 9))
    assert torch.equal(refitted.predict_actions(x), model.predict_actions(x))
    # the default chosen again from the same photos: the same choice, the same file, the networks untouched
    rechosen = rechoose_default(model, photos)
    assert rechosen.metadata["model_id"] == model.metadata["model_id"]
    assert rechosen.metadata["default_rechosen_from"] == model.metadata["model_id"]
    assert torch.equal(rechosen.actor.z, model.actor.z) and torch.equal(rechosen.critic.z, model.actor.z)
    x = torch.from_numpy(scenes(4, 9))
    assert torch.equal(rechosen.predict_actions(x), model.predict_actions(x))
    with pytest.raises(ValueError, match="photos it was trained with"):
        rechoose_default(model, photos[:3])
    with pytest.raises(ValueError, match="not a style prior"):
        rechoose_default(load_model(model_bytes(finetune(exposure_pairs(8), base=model, seed=0, seconds=0).model)),
                         photos)  # fmt: skip
    noisy = train_prior(
        photos, seed=0, max_steps=60, config=dataclasses.replace(cfg, feat_noise=0.3, actor_dropout=0.1)
    )
    assert noisy.curve != res.curve, "the policy's regularisers act on its update step"


def test_restore_styles_undo_the_camera_and_leave_some_photos_alone():
    photos = [np.asarray(scenes(1, s)[0]) for s in range(6)]
    plain = make_bank(photos, n_styles=12, photos_per_style=4, seed=0, env_size=16)
    bank = make_bank(photos, n_styles=12, photos_per_style=4, seed=0, env_size=16, restore_fraction=0.5)
    generated = (bank.after == plain.after).flatten(1).all(1)
    assert int((~generated).sum()) == 6, "half of the styles restore, the others are the plain bank's"
    assert torch.equal(bank.before[generated], plain.before[generated])
    restore_before, restore_after = bank.before[~generated], bank.after[~generated]
    untouched = (restore_before == restore_after).flatten(2).all(2)
    assert 0 < int(untouched.sum()) < untouched.numel(), "some befores left as they were, most jittered"
    assert torch.equal(restore_before[~untouched], plain.before[~generated][~untouched]), "jittered as usual"
    assert torch.isnan(bank.sliders[~generated]).all(), "their best sliders are searched, not known"


def test_the_offline_search_finds_edits_close_to_each_style_and_near_known_sliders():
    photos = [np.asarray(scenes(1, s)[0]) for s in range(6)]
    bank = make_bank(photos, n_styles=12, photos_per_style=4, seed=0, env_size=16)
    best_a, best_r = search_best_actions(
        bank, size=16, iters=8, popsize=8, gen=torch.Generator().manual_seed(0)
    )
    assert best_a.shape == (12, 4, 12) and best_r.shape == (12, 4)
    assert (best_r >= 0).all(), "never worse than no edit: the search keeps 'no edit' when nothing helps"
    changed = bank.baseline > 1.0  # pairs the style visibly changed
    assert (best_r[changed] > 0.3 * bank.baseline[changed]).float().mean() > 0.8
    # slider styles start from their own sliders, which reproduce the after: their reward stays near the most
    known = bank.has_sliders & changed
    if known.any():
        assert (best_r[known] > 0.8 * bank.baseline[known]).all()


def test_the_default_strength_keeps_good_photos_nearly_untouched():
    photos = [np.asarray(scenes(1, s)[0]) for s in range(6)]

    class Constant(torch.nn.Module):  # the same strong edit of every photo
        def __init__(self, value: float):
            super().__init__()
            self.value = value

        def forward(self, feats, conv_x=None, drop=0.0, noise=0.0):
            return torch.full((len(feats), 12), self.value)

    assert default_strength(Constant(0.0), *check_crops(photos, seed=0)) == 1.0
    strong = Constant(0.05)  # about 4 dE00 at full strength
    strength = default_strength(strong, *check_crops(photos, seed=0))
    assert 0.0 < strength < 1.0
    crops = torch.from_numpy(random_crops(photos, 100, np.random.default_rng(1), size=64))
    changed = reward.mean_delta_e(edit(crops, strong(crops) * strength), reward.srgb_to_lab(crops)).mean()
    assert float(changed) <= MILD_DELTA_E + 0.5  # other crops than the calibration's: a small margin


def test_the_default_is_checked_photo_by_photo():
    """Photos differ more than crops of one photo: a default that is mild on average over the crops but
    strong on some photos is served weaker than the pooled mean allows (the bound is on a typical photo,
    with Student's t over the photos)."""
    photos = [np.asarray(scenes(1, s)[0]) for s in range(6)]
    crops, photo = check_crops(photos, seed=0, n=60)
    assert crops.shape == (60, 64, 64, 3) and torch.equal(torch.bincount(photo), torch.full((6,), 10))
    for p in range(6):  # each photo's crops are cut from that photo
        assert float((crops[photo == p].float().mean() - float(photos[p].mean())).abs()) < 25

    class BrightnessDependent(torch.nn.Module):  # strong on bright photos, none on dark ones
        def forward(self, feats, conv_x=None, drop=0.0, noise=0.0):
            return (feats[:, 24:25] - 0.3).clamp(min=0).expand(-1, 12) * 0.2  # L* median above 30

    actor = BrightnessDependent()
    strength = default_strength(actor, crops, photo)
    target = reward.srgb_to_lab(crops)
    pooled = next(
        (s for s in DEFAULT_STRENGTHS
         if float(reward.mean_delta_e(edit(crops, actor(features(crops)) * s), target).mean()) <= MILD_DELTA_E),
        0.0,
    )  # fmt: skip
    assert strength < pooled
    assert upper_bound_of_mean(torch.tensor([1.5])) == 1.5
    assert upper_bound_of_mean(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(
        2.0 + 2.919986 / 3**0.5, abs=1e-4
    )


def test_the_model_id_changes_with_the_strength_it_is_served_at():
    model = random_prior()
    ids = {
        PersonalModel(model.actor, model.critic, metadata={"kind": "prior", "strength": s}, encoder=model.encoder)
        .metadata["model_id"]
        for s in (None, 0.4, 0.5)
    }  # fmt: skip
    assert len(ids) == 3


def test_the_linear_style_prior_is_the_mean_and_spread_of_the_styles_policies():
    """linear_prior_from_labels: each style's ridge policy, their mean, and a precision that is small
    along what varies from style to style (there a fit is free to follow the editor's labels)."""
    gen = torch.Generator().manual_seed(0)
    n_styles, per_style, n_feat = 30, 80, 5
    feats = torch.randn(n_styles * per_style, n_feat, generator=gen)
    style = torch.arange(n_styles).repeat_interleave(per_style)
    common = torch.randn(n_feat + 1, 12, generator=gen) * 0.1
    policies = common.expand(n_styles, -1, -1).clone()
    policies[:, -1, 0] += torch.randn(n_styles, generator=gen) * 0.5  # the styles differ in slider 0's offset
    xs = torch.cat([(feats - feats.mean(0)) / (feats.std(0) + 1e-6), torch.ones(len(feats), 1)], 1)
    labels = torch.einsum("nf,nfa->na", xs, policies[style])
    prior = linear_prior_from_labels(
        feats, labels, torch.ones(len(feats)), style, penalty=1e-6, shrinkage=0.1
    )
    assert torch.allclose(prior.mean, policies.mean(0), atol=1e-3)
    precision = prior.precision
    assert torch.allclose(precision, precision.T) and float(precision.diagonal().mean()) == pytest.approx(1.0)
    offset_0 = 0 * (n_feat + 1) + n_feat  # vec(W) ordered (slider, statistic): slider 0's bias
    assert float(precision[offset_0, offset_0]) < 1e-3 * float(precision.diagonal().median())
    with pytest.raises(ValueError, match="at least 2 styles"):
        linear_prior_from_labels(feats, labels, torch.zeros(len(feats)), style, penalty=1.0, shrinkage=0.1)
