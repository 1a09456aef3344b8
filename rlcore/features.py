"""What the networks see of a photo: global colour statistics and a small copy for the convolution.

The state is a photo's 64x64 thumbnail (``rlcore.imageio.THUMB_SIZE``, made by ``rlcore.imageio.thumbnail``).
The editor's adjustments are pointwise and global, so global colour statistics carry most of what
matters: ``features`` gives N_FEATURES of them (RGB and L* percentiles, a*/b* mean, spread and
percentiles, chroma, a lightness histogram, clipped-pixel shares, grey-world balance). The actor also
gets the thumbnail itself, shrunk to CONV_THUMB x CONV_THUMB (``conv_input``).

Changing what ``features`` computes makes every model file unreadable: bump
``rlcore.modelfile.FEATURE_VERSION`` with it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rlcore.color import linear_to_xyz, srgb_to_linear, xyz_to_lab
from rlcore.editor import LUMA

__all__ = [
    "N_FEATURES",
    "KEY_FEATURES",
    "CONV_THUMB",
    "features",
    "conv_input",
    "edit_statistics",
    "resize_u8",
]

CONV_THUMB = 16  # the actor's convolution input side

_Q = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], dtype=np.float32)
_Q3 = _Q[[1, 3, 5]]
_HIST_BINS = 16
N_FEATURES = 21 + 7 + 10 + 3 + _HIST_BINS + 2 + 2
_RGB, _L, _AB, _CHROMA, _GREY_WORLD = 0, 21, 28, 38, N_FEATURES - 2  # where each group of features starts

# The statistics that an editor's photo-dependent adjustments answer to: each channel's black and white
# point (levels), the lightness percentiles (exposure to a key, contrast, blacks and whites), the mean
# cast and colourfulness (white balance, saturation) and the grey-world balance. A linear policy on
# these few generalises from a handful of photos where one on all N_FEATURES follows what else the
# photos happen to have in common (rlcore.agent.distill's "key statistics" form).
KEY_FEATURES = (
    *(_RGB + c for c in range(3)),  # R, G, B 1st percentile
    *(_RGB + 6 * 3 + c for c in range(3)),  # R, G, B 99th percentile
    *range(_L, _L + 7),  # L* percentiles 1 ... 99
    _AB,  # a* mean
    _AB + 5,  # b* mean
    _CHROMA,  # chroma mean
    _GREY_WORLD,  # log R/G
    _GREY_WORLD + 1,  # log B/G
)


def _as_tensor_u8(images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.to(torch.uint8)
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))


# The histograms and their quantiles are counted in numpy: for one 64x64 thumbnail (a prediction) each
# torch operation costs its dispatch, and torch's int64 broadcasting and indexing are slow on small
# tensors. The counts are integers and the quantiles comparisons, so they come out exactly as torch's
# searchsorted gave them; the colour arithmetic stays in torch (rlcore.color), as the reward computes it.


def _bin_counts(idx: np.ndarray, bins: int) -> np.ndarray:
    """Each row's histogram (N, bins) of bin numbers idx (N, P) in [0, bins), in one bincount."""
    n = idx.shape[0]
    if n > 1:
        idx = idx + (np.arange(n) * bins)[:, None]
    return np.bincount(idx.reshape(-1), minlength=n * bins).reshape(n, bins)


def _hist_quantiles(counts: np.ndarray, p: int, q: np.ndarray) -> np.ndarray:
    """Quantiles q of each row's histogram counts (N, bins) of p values, as the quantile's bin number + 0.5
    (float32 (N, len(q))): the first bin whose cumulative share reaches q (less 1e-6, for rounding)."""
    bins = counts.shape[1]
    cdf = counts.cumsum(1).astype(np.float32) / np.float32(p)
    first = (cdf[:, None, :] < (q - np.float32(1e-6))[None, :, None]).sum(2)  # bins whose share is below q
    return np.minimum(first, bins - 1).astype(np.float32) + np.float32(0.5)


def _quantiles(v: np.ndarray, lo: float, hi: float, bins: int, q: np.ndarray) -> np.ndarray:
    """Quantiles q of each row of v (N, P) from a bins-bin histogram on [lo, hi] (sorting is 10x slower)."""
    width = np.float32((hi - lo) / bins)
    idx = np.clip(((v - np.float32(lo)) * np.float32(bins / (hi - lo))).astype(np.int64), 0, bins - 1)
    return np.float32(lo) + _hist_quantiles(_bin_counts(idx, bins), v.shape[1], q) * width


def features(thumbs) -> torch.Tensor:
    """Global colour statistics of uint8 thumbnails (N, H, W, 3) -> float32 (N, N_FEATURES), roughly O(1).

    Statistics that share a histogram's range are computed in one pass over the stacked channels: for
    one thumbnail (a prediction) the cost is the number of operations, not the pixels.
    """
    x = _as_tensor_u8(thumbs)
    n = x.shape[0]
    flat = x.reshape(n, -1, 3)
    pixels = flat.numpy()
    p = flat.shape[1]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # RGB percentiles: 256 bins of one code value each, so a pixel's bin is its code value.
    rgb_counts = np.concatenate([_bin_counts(channel, 256) for channel in (red, green, blue)])  # (3N, 256)
    f_rgb = (_hist_quantiles(rgb_counts, p, _Q) - np.float32(0.5)) / np.float32(255.0)  # (3N, 7)
    f_rgb = f_rgb.reshape(3, n, -1).transpose(1, 2, 0).reshape(n, -1)  # 21, percentile-major
    linear = srgb_to_linear(flat)  # (N, P, 3)
    lab = xyz_to_lab(linear_to_xyz(linear))
    L = (lab[..., 0] / 100.0).numpy()
    ab = lab[..., 1:].permute(2, 0, 1) / 50.0  # (2, N, P): a*, b*
    f_L = _quantiles(L, 0.0, 1.0, 200, _Q)  # 7
    ab_q = _quantiles(ab.reshape(2 * n, p).numpy(), -2.6, 2.6, 260, _Q3).reshape(2, n, 3)
    ab_mean, ab_std = ab.mean(2, keepdim=True).numpy(), ab.std(2, keepdim=True).numpy()
    f_ab = np.concatenate([ab_mean, ab_std, ab_q], 2).transpose(1, 0, 2).reshape(n, -1)  # 10: a then b
    chroma = torch.sqrt(ab[0] * ab[0] + ab[1] * ab[1])
    f_c = np.concatenate(
        [chroma.mean(1, keepdim=True).numpy(), _quantiles(chroma.numpy(), 0.0, 3.0, 150, _Q3[1:])], 1
    )  # 3
    bins = (np.clip(L, np.float32(0), np.float32(0.9999)) * np.float32(_HIST_BINS)).astype(np.int64)
    hist = _bin_counts(bins, _HIST_BINS).astype(np.float32) / np.float32(p) * np.float32(4.0)  # 16
    hi_clip = (np.maximum(np.maximum(red, green), blue) >= 254).mean(1, dtype=np.float32)
    lo_clip = (np.minimum(np.minimum(red, green), blue) <= 1).mean(1, dtype=np.float32)
    clip = np.stack([hi_clip, lo_clip], 1) * np.float32(4.0)  # 2
    lin = linear.mean(1) + 1e-3  # (N, 3)
    gw = torch.log(lin[:, [0, 2]] / lin[:, 1:2]).numpy()  # 2: log R/G, log B/G
    return torch.from_numpy(np.concatenate([f_rgb, f_L, f_ab, f_c, hist, clip, gw], 1, dtype=np.float32))


TRANSFER_BINS = 8  # edit_statistics' tone bins: equal shares of a photo's pixels
N_EDIT_STATISTICS = 3 * N_FEATURES + TRANSFER_BINS * (8 + 6)


def edit_statistics(before, after) -> torch.Tensor:
    """What an edit did to each photo: uint8 pairs (N, H, W, 3) -> float32 (N, N_EDIT_STATISTICS), for
    rlcore.networks.InverseEditor (H * W a multiple of TRANSFER_BINS).

    The editor acts on each pixel alone (rlcore.editor), so an edit is a map from colours to colours; these
    sample it where the photo has pixels: the pixels in TRANSFER_BINS bins of the before's luma, each
    bin's mean before and after RGB and mean colourfulness (max - min) before and after; each channel's
    own curve (its after mean in bins of its before value); and both photos' ``features`` and their
    difference. A base's inverse was trained on exactly these: changing them means ``python -m rlcore
    fit-inverse`` for the shipped base.
    """
    b = _as_tensor_u8(before)
    a = _as_tensor_u8(after)
    n = b.shape[0]
    b = b.reshape(n, -1, 3).float() / 255.0
    a = a.reshape(n, -1, 3).float() / 255.0
    bins = TRANSFER_BINS

    def binned(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:  # (N, P, C) -> (N, bins, C) means
        x = torch.gather(x, 1, order.unsqueeze(2).expand(-1, -1, x.shape[2]))
        return x.view(n, bins, -1, x.shape[2]).mean(2)

    by_luma = (b @ torch.tensor(LUMA)).argsort(1)
    colourful_b = (b.amax(2) - b.amin(2)).unsqueeze(2)
    colourful_a = (a.amax(2) - a.amin(2)).unsqueeze(2)
    tones = torch.cat([binned(b, by_luma), binned(a, by_luma), binned(colourful_b, by_luma),
                       binned(colourful_a, by_luma)], 2)  # fmt: skip
    by_channel = b.argsort(1)  # (N, P, 3): each channel's own order
    curves = [
        torch.gather(x, 1, by_channel).view(n, bins, -1, 3).mean(2) for x in (b, a)
    ]  # (N, bins, 3) each
    fb, fa = features(before), features(after)
    return torch.cat(
        [tones.reshape(n, -1), curves[0].reshape(n, -1), curves[1].reshape(n, -1), fb, fa, fa - fb], 1
    )


def conv_input(thumbs) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) -> float (N, 3, 16, 16) centred on 0: the actor's convolution input."""
    x = _as_tensor_u8(thumbs).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    if x.shape[-1] != CONV_THUMB:
        x = F.adaptive_avg_pool2d(x, CONV_THUMB)
    return x.contiguous()


def resize_u8(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3) by box averaging (thumbnails of another size, the
    reward's smaller copies while training)."""
    if x.shape[1] == size:
        return x
    y = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2).float(), size)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
