"""The editor's inverse (rlcore.inverse): what it reads, what it learns, where it travels, where it is used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore import reward
from rlcore.agent import Config, _search_pairs, edit, finetune, instant_step_seconds
from rlcore.data import PairSet, sample_photos
from rlcore.features import N_EDIT_STATISTICS, N_FEATURES, edit_statistics
from rlcore.inverse import InverseConfig, make_examples, train_inverse, with_inverse
from rlcore.modelfile import PersonalModel, load_model, model_bytes
from rlcore.networks import Actor, Critic, InverseEditor
from tests.test_agent import FAST
from tests.test_prior import random_prior

pytestmark = pytest.mark.filterwarnings("ignore")

SMALL = InverseConfig(examples=4_000, epochs=40, hidden=64, val_examples=400)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [image for _, image in sample_photos(("astronaut", "coffee", "rocket"))]


@pytest.fixture(scope="module")
def trained(photos) -> tuple[InverseEditor, dict]:
    return train_inverse(photos, SMALL, seed=0)


def test_edit_statistics_describe_the_change_not_only_the_photos(photos):
    before, after, actions = make_examples(photos, 64, SMALL, seed=5)
    stats = edit_statistics(before, after)
    assert stats.shape == (64, N_EDIT_STATISTICS) and stats.dtype == torch.float32
    assert torch.isfinite(stats).all()
    unchanged = edit_statistics(before, before)
    assert torch.equal(unchanged[:, -N_FEATURES:], torch.zeros(64, N_FEATURES)), "the features' difference"
    brighter = edit(before, torch.zeros(64, 12).index_fill_(1, torch.tensor([2]), 0.5))  # exposure +50
    assert not torch.allclose(edit_statistics(before, brighter), unchanged)
    assert (actions.abs() <= 1).all() and torch.allclose(actions * 100, (actions * 100).round(), atol=1e-4)


def test_the_inverse_recovers_edits_of_crops_it_never_saw(photos, trained):
    net, metrics = trained
    # held out in training: other crops of the same photos
    assert metrics["val_delta_e_inverse"] < 0.6 * metrics["val_delta_e_no_edit"], metrics
    # and photos it never saw, edited by sliders it never saw
    others = [image for _, image in sample_photos(("chelsea", "sklearn:flower.jpg"))]
    before, after, _ = make_examples(others, 300, SMALL, seed=9)
    target = reward.srgb_to_lab(after)
    no_edit = reward.mean_delta_e(before, target).mean()
    recovered = reward.mean_delta_e(edit(before, net.actions(before, after)), target).mean()
    assert recovered < 0.7 * no_edit, (float(recovered), float(no_edit))
    # any size of pair: it reads them at its own SIZE
    big_before = before[:4].repeat_interleave(4, 1).repeat_interleave(4, 2)
    big_after = after[:4].repeat_interleave(4, 1).repeat_interleave(4, 2)
    assert torch.allclose(net.actions(big_before, big_after), net.actions(before[:4], after[:4]), atol=1e-5)


def test_training_is_deterministic_for_a_seed(photos):
    tiny = InverseConfig(examples=600, epochs=2, hidden=16, val_examples=64)
    (a, ma), (b, mb) = train_inverse(photos, tiny, seed=1), train_inverse(photos, tiny, seed=1)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert {k: v for k, v in ma.items() if k != "seconds"} == {k: v for k, v in mb.items() if k != "seconds"}


def test_the_inverse_travels_in_the_base_models_file_and_only_there(photos, trained):
    prior = random_prior()
    based = with_inverse(prior, photos, InverseConfig(examples=600, epochs=1, hidden=16, val_examples=64))
    again = load_model(model_bytes(based))
    assert again.inverse is not None and again.metadata["kind"] == "prior"
    for name, value in based.inverse.state_dict().items():
        assert torch.equal(again.inverse.state_dict()[name], value), name
    assert again.metadata["model_id"] != prior.metadata["model_id"], "a new base version"
    assert again.metadata["inverse"]["refitted_from"] == prior.metadata["model_id"]
    assert again.encoder is not None and again.linear_prior is None  # the rest as it was
    plain = PersonalModel(Actor(), Critic(), metadata={"kind": "base"}, inverse=trained[0])
    assert load_model(model_bytes(plain)).inverse is not None, "a plain base may carry one too"
    assert load_model(model_bytes(prior)).inverse is None, "files without one still load"
    with pytest.raises(ValueError, match="not a base model"):
        with_inverse(PersonalModel(Actor(), metadata={"kind": "personal"}), photos, SMALL)


def test_the_searches_start_from_the_inverse_and_only_refine_it(photos, trained):
    net, _ = trained
    before, after, _ = make_examples(photos, 24, SMALL, seed=11)
    pairs = PairSet(before.numpy(), after.numpy())
    idx = np.arange(24)
    cfg = Config(**FAST)
    generations = []
    actions, rewards = _search_pairs(pairs, idx, cfg, 0, lambda: generations.append(1), net)
    assert len(generations) == cfg.inverse_search_iters
    target = reward.srgb_to_lab(after)
    start = net.actions(before, after)
    start_reward = reward.mean_delta_e(before, target) - reward.mean_delta_e(edit(before, start), target)
    assert (rewards >= start_reward.clamp_min(0) - 1e-5).all(), "never worse than the inverse's answer"
    generations.clear()
    _search_pairs(pairs, idx, cfg, 0, lambda: generations.append(1), None)
    assert len(generations) == cfg.search_iters, "without an inverse: the consensus search, as before"
    with_net = instant_step_seconds(cfg, 50, True, inverse=True)["search"]
    without = instant_step_seconds(cfg, 50, True, inverse=False)["search"]
    assert with_net == pytest.approx(without * cfg.inverse_search_iters / cfg.search_iters)


def test_fine_tuning_uses_its_bases_inverse_unless_told_not_to(photos, trained):
    before, after, _ = make_examples(photos, 12, SMALL, seed=13)
    pairs = PairSet(before.numpy(), after.numpy())
    prior = random_prior()
    prior.inverse = trained[0]
    used = finetune(pairs, base=prior, seconds=0, seed=0, config=Config(**FAST))
    unused = finetune(pairs, base=prior, seconds=0, seed=0, config=Config(**FAST, search_from_inverse=False))
    without = finetune(pairs, base=random_prior(), seconds=0, seed=0, config=Config(**FAST))
    assert unused.metrics["val_delta_e_personal"] == without.metrics["val_delta_e_personal"]
    assert used.metrics["val_delta_e_personal"] != without.metrics["val_delta_e_personal"]
    assert used.model.inverse is None, "personal models do not carry it"
