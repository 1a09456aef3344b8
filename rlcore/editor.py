"""The black-box photo editor: 12 global adjustments modelled on Lightroom's Basic panel.

Each adjustment is an integer slider in [-100, 100] with 0 = unchanged; docs/editor.md has the table
of what -100 and +100 do. Every adjustment is pointwise: an output pixel depends only on the same
input pixel and the sliders. The pipeline, per pixel:

1. white balance (temperature, tint) and exposure: per-channel gains in linear light;
2. tone (whites, highlights, shadows, blacks, contrast, brightness, fade): one curve applied to each
   sRGB-encoded channel;
3. colour (vibrance, saturation): push each pixel away from / toward its luma;
4. quantize to the input's bit depth.

Steps 1 and 2 act on each channel alone, so for integer input they collapse into a lookup table per
image and channel (256 entries for 8-bit input, 65536 for 16-bit); the table is computed in float32
for 8-bit input (its rounding errors, ~1e-6, are far below the output's step of 1/255) and in float64
for 16-bit, and the per-pixel work is one gather plus step 3. This is what makes thousands of 64x64
edits per second possible on a CPU.

It is a black box by contract: sliders are rounded to integers, the output is quantized, and it runs
under ``torch.no_grad`` so nothing can backpropagate through it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from rlcore.color import linear_to_srgb, srgb_to_linear

__all__ = ["ADJUSTMENTS", "apply", "apply_batch", "apply_tiled"]

ADJUSTMENTS: tuple[str, ...] = (
    "temperature",
    "tint",
    "exposure",
    "contrast",
    "highlights",
    "shadows",
    "whites",
    "blacks",
    "vibrance",
    "saturation",
    "brightness",
    "fade",
)
_INDEX = {name: i for i, name in enumerate(ADJUSTMENTS)}

# Strength of each slider at +-100; docs/editor.md turns these into words.
TEMPERATURE_STOPS = 0.5  # red gain up and blue gain down by this many stops (warmer) at +100
TINT_STOPS = 0.4  # green gain down by this many stops (toward magenta) at +100
EXPOSURE_STOPS = 2.0  # +-2 EV at +-100
CONTRAST_GAMMA_STOPS = 0.8  # slope of the S-curve at the pivot is 2**(0.8 * c)
CONTRAST_PIVOT = 0.46  # sRGB-encoded middle grey (18 % reflectance)
HIGHLIGHTS_AMOUNT = 0.9  # bump p^2 (1 - p): largest change 0.13 at p = 2/3
SHADOWS_AMOUNT = 0.9  # bump p (1 - p)^2: largest change 0.13 at p = 1/3
WHITES_AMOUNT = 0.25  # the brightest values scaled by 1 +- 0.25
BLACKS_AMOUNT = 0.25  # black moved by +-0.25, fading out as (1 - p)^3
BRIGHTNESS_GAMMA_STOPS = 0.7  # midtone gamma 2**(-+0.7)
FADE_LIFT = 0.2  # black lifted to 0.2 at +100; -100 is the exact inverse curve
LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights, applied to encoded values (luma, not luminance)


def _tone_curve(p: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tone adjustments on sRGB-encoded values ``p`` (may exceed 1 after exposure gains).

    Each step is monotone for every slider value (tests/test_editor.py checks it), so the curve never
    inverts tones. ``k`` holds each slider as a (N, 1, 1) tensor in [-1, 1].
    """
    # Whites: scale the top end; beyond 1 it is a plain gain, so -100 pulls clipped values back.
    top = p.clamp(0.0, 1.0)
    p = p * (1.0 + WHITES_AMOUNT * k["whites"] * top * top)
    q = p.clamp(0.0, 1.0)
    p = p + HIGHLIGHTS_AMOUNT * k["highlights"] * q * q * (1.0 - q)
    p = p.clamp(0.0, 1.0)
    p = p + SHADOWS_AMOUNT * k["shadows"] * p * (1.0 - p) ** 2
    p = (p + BLACKS_AMOUNT * k["blacks"] * (1.0 - p) ** 3).clamp(0.0, 1.0)

    # Contrast: a power S-curve through (pivot, pivot) that keeps 0 and 1 fixed. Each value needs the
    # power of one side only, so the sides' bases are picked first and raised once (the costliest op).
    gamma = torch.exp2(CONTRAST_GAMMA_STOPS * k["contrast"])
    below = p < CONTRAST_PIVOT
    base = torch.where(below, p / CONTRAST_PIVOT, (1.0 - p) / (1.0 - CONTRAST_PIVOT)).clamp_min_(0.0)
    powered = base.pow_(gamma)
    p = torch.where(below, CONTRAST_PIVOT * powered, 1.0 - (1.0 - CONTRAST_PIVOT) * powered)

    # Brightness: midtone gamma, endpoints fixed (Lightroom's pre-2012 Brightness).
    p = p ** torch.exp2(-BRIGHTNESS_GAMMA_STOPS * k["brightness"])

    # Fade: +f maps [0, 1] onto [f, 1] (matte blacks); -f is the inverse map, clipped at 0.
    f = FADE_LIFT * k["fade"]
    lifted = f + (1.0 - f) * p
    deepened = (p + f) / (1.0 + f)  # f < 0 here
    return torch.where(f >= 0, lifted, deepened).clamp(0.0, 1.0)


def _channel_luts(params: torch.Tensor, levels: int) -> torch.Tensor:
    """Steps 1 and 2 of the pipeline as tables: (N, 12) sliders in [-1, 1] -> (N, 3, levels) float32.

    Entry [n, c, v] is the sRGB-encoded value (0-1) that input code v of channel c becomes in image n.
    Computed in float32 for 8-bit input: on 16x16 search images the tables cost as much as the pixels, and
    float32 halves them; 16-bit output's step (1/65535) needs float64.
    """
    params = params.to(torch.float32 if levels <= 256 else torch.float64)
    k = {name: params[:, i].reshape(-1, 1, 1) for i, name in enumerate(ADJUSTMENTS)}
    zero = torch.zeros_like(k["temperature"])
    t, tint = k["temperature"], k["tint"]
    log_gains = torch.cat(
        (TEMPERATURE_STOPS * t, -TINT_STOPS * tint + zero, -TEMPERATURE_STOPS * t), dim=1
    )  # (N, 3, 1): R, G, B
    gains = torch.exp2(log_gains)
    # White balance moves colour, not brightness: keep the luminance of grey unchanged.
    luminance_weights = torch.tensor(LUMA, dtype=params.dtype, device=params.device).reshape(1, 3, 1)
    gains = gains / (gains * luminance_weights).sum(dim=1, keepdim=True)
    gains = gains * torch.exp2(EXPOSURE_STOPS * k["exposure"])

    codes = torch.arange(levels, dtype=params.dtype, device=params.device) / (levels - 1)
    linear = srgb_to_linear(codes).reshape(1, 1, levels)
    encoded = linear_to_srgb(gains * linear)
    return _tone_curve(encoded, k).to(torch.float32)


def _render(codes: torch.Tensor, params: torch.Tensor, levels: int, out: torch.Tensor) -> None:
    """Edit integer images ``codes`` (N, H, W, 3) into ``out`` (same shape, any integer dtype).

    ``params``: (N, 12) float64 sliders in [-1, 1]. The single implementation behind every entry point.
    """
    n, h, w, _ = codes.shape
    luts = _channel_luts(params, levels)
    # Planar layout (N, 3, H*W) so each channel is one contiguous row for the elementwise ops below.
    index = torch.empty((n, 3, h, w), dtype=torch.int64, device=codes.device)
    index.copy_(codes.permute(0, 3, 1, 2))
    x = torch.gather(luts, 2, index.view(n, 3, h * w))
    del index
    r, g, b = x[:, 0], x[:, 1], x[:, 2]

    luma = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    # Colourfulness in [0, 1]; vibrance acts most on muted colours and least on saturated ones.
    chroma = torch.maximum(torch.maximum(r, g), b) - torch.minimum(torch.minimum(r, g), b)
    vib = params[:, _INDEX["vibrance"]].to(torch.float32).reshape(n, 1)
    sat = params[:, _INDEX["saturation"]].to(torch.float32).reshape(n, 1)
    factor = (1.0 + sat) * (1.0 + vib * (1.0 - chroma))
    luma = luma.unsqueeze(1)
    x = (x - luma).mul_(factor.unsqueeze(1)).add_(luma)
    x = x.mul_(levels - 1).round_().clamp_(0, levels - 1)
    out.permute(0, 3, 1, 2).copy_(x.view(n, 3, h, w))


def _validate_sliders(sliders: torch.Tensor) -> torch.Tensor:
    """Round to integers, check the range, return (N, 12) float64 in [-1, 1]."""
    if sliders.ndim != 2 or sliders.shape[1] != len(ADJUSTMENTS):
        raise ValueError(f"sliders must have shape (N, {len(ADJUSTMENTS)}), got {tuple(sliders.shape)}")
    rounded = torch.round(sliders.detach().to(torch.float64))
    bad = ~(rounded.abs() <= 100)  # also catches NaN
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"slider {ADJUSTMENTS[col]!r} of image {row} is {sliders[row, col].item()}, outside [-100, 100]"
        )
    return rounded / 100.0


@torch.no_grad()
def apply_batch(images: torch.Tensor, sliders: torch.Tensor) -> torch.Tensor:
    """Edit N images with N slider vectors in one call.

    images: uint8 (N, H, W, 3); sliders: (N, 12) float or int in ADJUSTMENTS order, rounded to
    integers, each in [-100, 100] (ValueError otherwise). Returns a new uint8 (N, H, W, 3) tensor on
    the images' device.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    if sliders.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {sliders.shape[0]} slider vectors")
    params = _validate_sliders(sliders.to(images.device))
    out = torch.empty_like(images)
    _render(images, params, 256, out)
    return out


def sliders_from_dict(adjustments: Mapping[str, int | float]) -> np.ndarray:
    """{name: value} (missing names = 0) -> (12,) int array; ValueError for unknown names or ranges."""
    unknown = sorted(set(adjustments) - set(ADJUSTMENTS))
    if unknown:
        raise ValueError(f"unknown adjustment(s) {unknown}; known: {list(ADJUSTMENTS)}")
    vector = np.zeros(len(ADJUSTMENTS), dtype=np.int64)
    for name, value in adjustments.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"adjustment {name!r} must be a number, got {value!r}")
        if not -100 <= value <= 100:  # False for NaN too
            raise ValueError(f"adjustment {name!r} = {value} is outside [-100, 100]")
        vector[_INDEX[name]] = round(value)
    return vector


def apply(image: np.ndarray, adjustments: Mapping[str, int | float]) -> np.ndarray:
    """Edit one HxWx3 uint8 image with {name: int} (missing names = 0); returns a new uint8 array."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 HxWx3 array, got {image.dtype} {image.shape}")
    sliders = torch.from_numpy(sliders_from_dict(adjustments)).unsqueeze(0)
    pixels = torch.from_numpy(np.require(image, requirements=["C", "W"]))  # torch wants writable memory
    return apply_batch(pixels.unsqueeze(0), sliders)[0].numpy()


@torch.no_grad()
def apply_tiled(
    image: np.ndarray, adjustments: Mapping[str, int | float], tile_pixels: int = 1 << 20
) -> np.ndarray:
    """Edit a large uint8 or uint16 HxWx3 or HxWx4 image in strips of about ``tile_pixels`` pixels.

    The full-resolution path: 16-bit images are edited with 65536-entry tables and stay 16-bit, an
    alpha channel is copied through unchanged, and memory beyond input and output stays bounded by the
    strip size. Same pixels as ``apply`` for 8-bit RGB.
    """
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be uint8/uint16 HxWx3 or HxWx4, got {image.dtype} {image.shape}")
    levels = 256 if image.dtype == np.uint8 else 65536
    params = _validate_sliders(torch.from_numpy(sliders_from_dict(adjustments)).unsqueeze(0))
    height, width = image.shape[:2]
    out = np.empty_like(image)
    if image.shape[2] == 4:
        out[..., 3] = image[..., 3]
    rows = max(1, tile_pixels // max(width, 1))
    for top in range(0, height, rows):
        strip = image[top : top + rows, :, :3]
        # torch has no general uint16 arithmetic; widen the strip (and the result) to int32.
        codes = torch.from_numpy(np.ascontiguousarray(strip).astype(np.int32, copy=False)).unsqueeze(0)
        edited = torch.empty(codes.shape, dtype=torch.int32)
        _render(codes, params, levels, edited)
        out[top : top + rows, :, :3] = edited[0].numpy()
    return out
