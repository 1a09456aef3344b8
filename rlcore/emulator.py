"""A small differentiable stand-in for one editor's style, learned from their pairs, for augmentation.

Why: fine-tuning augments each before with camera-like jitter (exposure, white balance, contrast,
saturation). Keeping the editor's after as the augmented copy's target is right for whatever the editor
*undoes* (a style that neutralises colour casts should remove an added cast too) but wrong for whatever
the style *keeps* (a style that preserves the camera's warm cast and adds a look on top should keep an
added cast as well). Which one holds is a property of the editor, visible in their pairs.

The emulator answers it: ``after ~= emulate(before)`` with

* a per-photo part: levels (each channel's own black and white point moved to new places), linear-light
  channel gains (exposure, white balance) and a saturation factor. These 10 numbers are a linear function
  of 15 global statistics of the before (mid-tone grey world, log luminance quantiles, per-channel
  black/white points, saturation): a style that sets exposure from the photo's median learns a gain that
  cancels the median; one that keeps the camera's cast learns no dependence on grey world;
* a shared part: a per-pixel MLP on the result (tone curve, split toning, colour look).

Fitted in one to two seconds on the training pairs (statistics on 32x32 copies, the loss on 16x16), it
gives a jittered before ``b'`` of pair (b, after) the target ``after + emulate(b') - emulate(b)``: the
editor's own after, moved by what the style would do differently for the jittered photo. Only that
difference comes from the emulator, so its errors about the look itself largely cancel; where the style
undoes the jitter, the target stays (nearly) the after.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlcore.color import linear_to_srgb, srgb_to_linear
from rlcore.editor import LUMA
from rlcore.features import resize_u8

N_STATS = 15
STATS_SIZE = 32
N_PHOTO_PARAMS = 10


def _quantile_rows(v: torch.Tensor, q: list[float]) -> torch.Tensor:
    return torch.quantile(v, torch.tensor(q, dtype=v.dtype), dim=1).T


def photo_stats(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 15): the statistics the per-photo part depends on (on a 32x32 copy,
    so that they do not depend on the size the emulator is run at)."""
    images = resize_u8(images, STATS_SIZE)
    n = images.shape[0]
    enc = images.reshape(n, -1, 3).float() / 255.0
    lin = srgb_to_linear(images.reshape(n, -1, 3))
    y = lin @ torch.tensor(LUMA)
    lo, hi = _quantile_rows(y, [0.1, 0.97]).unbind(1)
    mid = ((y >= lo[:, None]) & (y <= hi[:, None])).float().unsqueeze(-1)
    grey_world = torch.log((lin * mid).sum(1) / mid.sum(1).clamp_min(1.0) + 1e-3)  # 3
    log_y = torch.log2(_quantile_rows(y, [0.02, 0.25, 0.5, 0.75, 0.98]) + 1e-3)  # 5
    black = torch.stack([_quantile_rows(enc[..., c], [0.005]) for c in range(3)], 1).squeeze(-1)  # 3
    white = torch.stack([_quantile_rows(enc[..., c], [0.995]) for c in range(3)], 1).squeeze(-1)  # 3
    luma = enc @ torch.tensor(LUMA)
    sat = torch.log((enc - luma.unsqueeze(-1)).abs().mean((1, 2)) + 1e-3).unsqueeze(1)  # 1
    return torch.cat([grey_world, log_y, black, white, sat], 1)


class StyleEmulator(nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.register_buffer("stats_mean", torch.zeros(N_STATS))
        self.register_buffer("stats_std", torch.ones(N_STATS))
        self.photo = nn.Linear(N_STATS, N_PHOTO_PARAMS)
        self.look = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                  nn.Linear(hidden, 3))  # fmt: skip
        for layer in (self.photo, self.look[-1]):  # start as "no edit"
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) and their photo_stats -> float (N, H, W, 3) encoded sRGB in [0, 1]."""
        p = self.photo((stats - self.stats_mean) / self.stats_std)
        view = (-1, 1, 1, 3)
        # levels: the photo's own black and white points (per channel) move to new places
        black, white = stats[:, 8:11], stats[:, 11:14]
        new_black, new_white = black + p[:, 0:3], white + p[:, 3:6]
        scale = (new_white - new_black) / (white - black).clamp_min(0.05)
        enc = images.float() / 255.0
        enc = (new_black.view(view) + (enc - black.view(view)) * scale.view(view)).clamp(0, 1)
        # exposure and white balance: channel gains in linear light
        lin = srgb_to_linear(enc) * torch.exp(p[:, 6:9]).view(view)
        enc = linear_to_srgb(lin.clamp_min(1e-6)).clamp(0, 1)  # the curve's slope is infinite at 0
        luma = (enc * torch.tensor(LUMA)).sum(-1, keepdim=True)
        enc = luma + (enc - luma) * torch.exp(p[:, 9]).view(-1, 1, 1, 1)
        return (enc + self.look(enc)).clamp(0, 1)


def fit(
    before,
    after,
    steps: int = 300,
    size: int = 16,
    seed: int = 0,
    weight_decay: float = 1e-2,
    max_pairs: int = 64,
) -> StyleEmulator:
    """Fits an emulator to uint8 (N, H, W, 3) pairs (full batch, Adam, mean squared error on sRGB of
    size x size copies: the look is per pixel, so a few hundred pixels per photo are plenty). At most
    max_pairs pairs (a seeded random subset) are used, so the cost does not grow with the pair count."""
    before, after = np.asarray(before), np.asarray(after)
    if len(before) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(before), max_pairs, replace=False))
        before, after = before[keep], after[keep]
    before, after = torch.as_tensor(before), torch.as_tensor(after)
    stats = photo_stats(before)
    b, a = resize_u8(before, size), resize_u8(after, size).float() / 255.0
    with torch.random.fork_rng():  # seeded initial weights, without touching the caller's random state
        torch.manual_seed(seed)
        model = StyleEmulator()
    model.stats_mean.copy_(stats.mean(0))
    model.stats_std.copy_(stats.std(0).clamp_min(1e-3) if len(stats) > 1 else torch.ones(N_STATS))
    opt = torch.optim.Adam(
        [
            {"params": model.photo.parameters(), "weight_decay": weight_decay},
            {"params": model.look.parameters(), "weight_decay": 0.0},
        ],
        lr=0.02,
    )
    for _ in range(steps):
        loss = F.mse_loss(model(b, stats), a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def emulate(model: StyleEmulator, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float encoded sRGB (N, H, W, 3): the emulated afters."""
    return model(images, photo_stats(images))


@torch.no_grad()
def moved_targets(
    model: StyleEmulator, before: torch.Tensor, jittered: torch.Tensor, after: torch.Tensor, size: int = 32
) -> torch.Tensor:
    """Targets for jittered copies of befores: after + emulate(jittered) - emulate(before), as uint8.

    before, after: (N, H, W, 3); jittered: (K * N, H, W, 3), copy i of pair i % N. The emulator runs on
    size x size copies (its difference is smooth; fine-tuning scores edits at 32x32 anyway) and the
    difference is scaled up to H x W.
    """
    copies = jittered.shape[0] // before.shape[0]
    base = emulate(model, resize_u8(before, size))
    delta = emulate(model, resize_u8(jittered, size)) - base.repeat(copies, 1, 1, 1)
    if delta.shape[1:3] != after.shape[1:3]:
        delta = F.interpolate(delta.permute(0, 3, 1, 2), size=after.shape[1:3], mode="nearest")
        delta = delta.permute(0, 2, 3, 1)
    moved = after.float().repeat(copies, 1, 1, 1) / 255.0 + delta
    return (moved.clamp(0, 1) * 255.0).round().to(torch.uint8)
