"""rlcore.reward against the colour-science route, and its sign and weighting."""

import colour
import numpy as np
import torch

from rlcore import editor, reward
from rlcore.imageio import thumbnail
from tests.photos import photo


def _colour_mean_de(x, y, w=None):
    def lab(img):
        return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(img / 255.0))

    de = colour.delta_E(lab(x), lab(y), method="CIE 2000")
    return np.average(de, weights=w)


def _pairs():
    rng = np.random.default_rng(0)
    before = np.stack([thumbnail(photo(n)) for n in ("astronaut", "coffee", "rocket", "grace_hopper")])
    target = editor.apply_batch(
        torch.from_numpy(before), torch.from_numpy(rng.integers(-50, 51, (4, 12)))
    ).numpy()
    edited = editor.apply_batch(
        torch.from_numpy(before), torch.from_numpy(rng.integers(-50, 51, (4, 12)))
    ).numpy()
    return before, edited, target


def test_reward_matches_colour_science_with_and_without_weights():
    before, edited, target = _pairs()
    weights = np.random.default_rng(1).uniform(0.5, 3, before.shape[:3]).astype(np.float32)
    for w in (None, weights):
        got = reward.reward(
            *(torch.from_numpy(x) for x in (before, edited, target)),
            None if w is None else torch.from_numpy(w),
        )
        assert got.dtype == torch.float32 and got.shape == (4,)
        for i in range(4):
            wi = None if w is None else w[i]
            expected = _colour_mean_de(before[i], target[i], wi) - _colour_mean_de(edited[i], target[i], wi)
            assert abs(float(got[i]) - expected) < 1e-3


def test_reward_sign():
    before, _, target = _pairs()
    b, t = torch.from_numpy(before), torch.from_numpy(target)
    assert torch.all(reward.reward(b, t, t) > 0)  # reaching the target
    assert torch.all(reward.reward(b, b, t) == 0)  # doing nothing
    assert torch.all(reward.reward(t, b, t) < 0)  # moving away from it


def test_weights_favour_the_weighted_region():
    before = np.full((1, 8, 8, 3), 100, np.uint8)
    target = before.copy()
    target[:, :4] = 160  # top half differs
    edited = before.copy()
    edited[:, :4] = 160  # fixes the top half only
    w = np.ones((1, 8, 8), np.float32)
    args = [torch.from_numpy(x) for x in (before, edited, target)]
    plain = reward.reward(*args)
    w[:, :4] = 3
    weighted = reward.reward(*args, torch.from_numpy(w))
    assert weighted > plain > 0
