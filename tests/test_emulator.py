"""The style emulator behind fine-tuning's augmentation: it must tell what a style undoes from what it keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcore import emulator, reward
from rlcore.agent import camera_jitter
from rlcore.color import linear_to_srgb, srgb_to_linear
from tests.test_agent import scenes

pytestmark = pytest.mark.filterwarnings("ignore")


def _u8(enc: torch.Tensor) -> torch.Tensor:
    return (enc.clamp(0, 1) * 255).round().to(torch.uint8)


def normalising_style(images: torch.Tensor) -> torch.Tensor:
    """Undoes exposure and colour cast (grey world to a warm white, median to mid-grey), then a curve."""
    lin = srgb_to_linear(images)
    grey = lin.mean((1, 2), keepdim=True)
    lin = lin / grey * torch.tensor([0.20, 0.18, 0.15])
    enc = linear_to_srgb(lin).clamp(0, 1)
    return _u8(enc + 0.3 * enc * (1 - enc) * (enc - 0.3))


def keeping_style(images: torch.Tensor) -> torch.Tensor:
    """Keeps the photo's exposure and cast, adds a fixed warm look and a matte."""
    lin = srgb_to_linear(images) * torch.tensor([1.15, 1.0, 0.8])
    return _u8(0.06 + 0.9 * linear_to_srgb(lin).clamp(0, 1))


def mean_de(images: torch.Tensor, target: torch.Tensor) -> float:
    return float(reward.mean_delta_e(images, reward.srgb_to_lab(target)).mean())


def test_it_learns_a_style_that_adapts_to_the_photo():
    before = torch.from_numpy(scenes(30, 0))
    model = emulator.fit(before, normalising_style(before), seed=0)
    new = torch.from_numpy(scenes(12, 1))
    truth = normalising_style(new)
    assert mean_de(_u8(emulator.emulate(model, new)), truth) < 0.35 * mean_de(new, truth)


def test_moved_targets_keep_what_the_style_keeps():
    """A style that keeps the camera's exposure and cast: a jittered before's target must follow the jitter."""
    before = torch.from_numpy(scenes(30, 0))
    after = keeping_style(before)
    model = emulator.fit(before, after, seed=0)
    jittered = camera_jitter(before, torch.Generator().manual_seed(0), 1.0)
    truth = keeping_style(jittered)
    moved = emulator.moved_targets(model, before, jittered, after)
    assert moved.dtype == torch.uint8 and moved.shape == after.shape
    assert mean_de(moved, truth) < 0.5 * mean_de(after, truth)


def exposure_and_cast(images: torch.Tensor, ev: float, gains: tuple[float, float, float]) -> torch.Tensor:
    lin = srgb_to_linear(images) * (2.0**ev) * torch.tensor(gains)
    return _u8(linear_to_srgb(lin))


def test_moved_targets_stay_where_the_style_normalises():
    """A style that undoes exposure and cast: for a before under-exposed with a cast, the moved target
    stays at the after (what the style gives), instead of following the jitter."""
    before = torch.from_numpy(scenes(30, 2))
    after = normalising_style(before)
    model = emulator.fit(before, after, seed=0)
    jittered = exposure_and_cast(before, -0.8, (1.15, 1.0, 0.85))
    truth = normalising_style(jittered)
    moved = emulator.moved_targets(model, before, jittered, after)
    followed = exposure_and_cast(after, -0.8, (1.15, 1.0, 0.85))  # what "keep the jitter" would give
    assert mean_de(moved, truth) < 0.4 * mean_de(followed, truth)


def test_fit_is_deterministic_and_finite_on_flat_photos():
    before = torch.from_numpy(scenes(6, 3))
    before[0] = 0  # black
    before[1] = 255  # white
    before[2] = 128  # flat grey
    after = keeping_style(before)
    state = torch.get_rng_state()
    a = emulator.fit(before, after, seed=5, steps=50)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is left alone
    b = emulator.fit(before, after, seed=5, steps=50)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    out = emulator.emulate(a, before)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.isfinite(emulator.photo_stats(before)).all()


def test_stats_do_not_depend_on_the_size():
    x = torch.from_numpy(scenes(4, 4))
    small = torch.nn.functional.adaptive_avg_pool2d(x.permute(0, 3, 1, 2).float(), 32)
    small = small.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    assert torch.allclose(emulator.photo_stats(x), emulator.photo_stats(small))
    assert np.isfinite(emulator.photo_stats(x).numpy()).all()
