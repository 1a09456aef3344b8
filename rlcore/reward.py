"""The reward: how much closer (in CIEDE2000) an edit brought a photo to the expert's version.

    reward = weighted-mean dE00(before, target) - weighted-mean dE00(edited, target)

Positive when the edit moved the photo toward the target. The agent calls this thousands of times
per second on 64x64 thumbnails, so the target's Lab is worth computing once:

    target_lab = srgb_to_lab(target)                   # once per pair, (N, H, W, 3) float32
    baseline = mean_delta_e(before, target_lab, w)     # once per pair
    r = baseline - mean_delta_e(apply_batch(before, sliders), target_lab, w)   # each step

which is exactly what ``reward`` computes in one call.
"""

from __future__ import annotations

import torch

from rlcore.color import delta_e_2000_planes, srgb_to_lab_planes
from rlcore.color import srgb_to_lab as srgb_to_lab

__all__ = ["reward", "mean_delta_e", "srgb_to_lab"]

_CHUNK_PIXELS = 1 << 17


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(N, P) values -> (N,) mean, weighted by (N, H, W) weights when given."""
    if weights is None:
        return values.mean(dim=1)
    w = weights.reshape(values.shape).to(values.dtype)
    return (values * w).sum(dim=1) / w.sum(dim=1)


@torch.no_grad()
def mean_delta_e(
    images: torch.Tensor, target_lab: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted-mean CIEDE2000 between uint8 images (N, H, W, 3) and a precomputed target Lab.

    target_lab: (N, H, W, 3) float32 from ``srgb_to_lab(target)``; weights: (N, H, W) or None
    (uniform). Returns float32 (N,).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    if target_lab.shape != images.shape:
        raise ValueError(f"target_lab has shape {tuple(target_lab.shape)}, images {tuple(images.shape)}")
    n = images.shape[0]
    target = target_lab.to(torch.float32).reshape(n, -1, 3).permute(2, 0, 1).contiguous()
    # A few dozen thumbnails at a time: the ~100 temporaries of dE00 then stay in cache.
    step = max(1, _CHUNK_PIXELS // (images.shape[1] * images.shape[2]))
    de = torch.empty((n, target.shape[2]), dtype=torch.float32, device=images.device)
    for s in range(0, n, step):
        L1, a1, b1 = srgb_to_lab_planes(images[s : s + step])
        t = target[:, s : s + step]
        de[s : s + step] = delta_e_2000_planes(L1, a1, b1, t[0], t[1], t[2])
    return _weighted_mean(de, weights)


@torch.no_grad()
def reward(
    before: torch.Tensor, edited: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted-mean dE00(before, target) - weighted-mean dE00(edited, target), float32 (N,).

    before, edited, target: uint8 (N, H, W, 3); weights: (N, H, W) or None for uniform weights
    (e.g. ``rlcore.faces.face_weights`` to count faces more).
    """
    if not (before.shape == edited.shape == target.shape):
        raise ValueError(
            f"shapes differ: before {tuple(before.shape)}, edited {tuple(edited.shape)}, target {tuple(target.shape)}"
        )
    if target.dtype != torch.uint8:
        raise ValueError(f"target must be uint8, got {target.dtype}")
    target_lab = srgb_to_lab(target)
    return mean_delta_e(before, target_lab, weights) - mean_delta_e(edited, target_lab, weights)
