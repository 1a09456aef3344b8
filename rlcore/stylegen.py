"""Random photo-editing styles: the training distribution for a "style prior".

A style is one random editing program with fixed parameters, the way a photographer's preset or habit
is: most steps adapt to each photo (auto exposure towards a key, auto white balance, auto levels), so
the same style gives different edits of a dark and a bright photo, as a real editor would. Training
across thousands of such styles lets a model learn what editing styles look like, so that a new
editor's few before/after pairs only have to say *which* style it is.

Two kinds of style:

* slider styles (``SLIDER_ONLY_PROBABILITY``): the editor's own sliders (rlcore.editor) as a function
  of photo statistics, ``sliders = clip(round(b + W @ stats(photo)), -100, 100)``; the sliders are
  returned, so these samples come with exact supervision;
* compositions: a raw-converter-like pipeline of components, each switched on at random. In order:
  an optional slider step, then white balance and exposure (channel gains in linear light), channel
  mixing (linear light), tone curve (sRGB-encoded), colour (saturation, vibrance, hue shifts in an
  opponent-colour plane) and split toning; clipped and rounded to 8 bits at the end. Their sliders are
  NaN: no slider vector reproduces them.

A component that is off has identity parameters (gain 1, contrast 0, ...), so every style has every
field and the pipeline never branches per style. Everything is batched float32 torch: applying
styles to 10,000 64x64 thumbnails takes a few seconds on one CPU thread.

    gen = torch.Generator().manual_seed(0)
    styles = random_styles(1000, gen)
    which = torch.randint(0, 1000, (n,), generator=gen)
    afters, sliders = apply(styles, which, befores)   # sliders: NaN rows for compositions

``python -m rlcore.stylegen sheet.png`` writes a contact sheet and prints dE00 and speed statistics.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from rlcore.color import linear_to_srgb, srgb_to_lab, srgb_to_linear
from rlcore.data import BASE_PHOTOS, random_crops, sample_photo
from rlcore.editor import ADJUSTMENTS, LUMA, apply_batch
from rlcore.reward import mean_delta_e

__all__ = ["Styles", "identity_styles", "random_styles", "apply", "photo_stats", "STATS"]

# --- the distribution of styles ------------------------------------------------------------------------
# Probabilities are per style; "U(a, b)" below means uniform, ranges are the extremes a style may take.

SLIDER_ONLY_PROBABILITY = 0.25  # styles that are purely editor sliders (exact supervision)
SLIDER_FIRST_PROBABILITY = 0.12  # compositions that start with a slider step

# Slider styles. A slider is used by a style with this probability; its constant part b is
# U(-1, 1) * SLIDER_BIAS_SCALE (per slider, in slider units), plus couplings to photo statistics.
SLIDER_ACTIVE_PROBABILITY = 0.4
SLIDER_BIAS_SCALE = {
    "temperature": 35,
    "tint": 20,
    "exposure": 35,
    "contrast": 45,
    "highlights": 60,
    "shadows": 60,
    "whites": 40,
    "blacks": 40,
    "vibrance": 45,
    "saturation": 35,
    "brightness": 35,
    "fade": 35,
}
# "Auto" couplings: the slider that undoes a statistic's deviation from typical, as slider units per
# unit of the statistic at full strength (e.g. exposure +100 = +2 EV, so 50 per stop of brightness).
# A style uses each with SLIDER_AUTO_PROBABILITY and a strength U(0, 1).
SLIDER_AUTO_COUPLINGS = (
    ("exposure", "log_luminance", -50.0),
    ("temperature", "amber_cast", -100.0),  # +100 moves log2(R/B) by +1
    ("tint", "green_cast", 250.0),  # +100 moves green by -0.4 stops
    ("contrast", "tonal_range", -120.0),
    ("vibrance", "chroma", -300.0),
    ("shadows", "log_luminance", -30.0),
)
SLIDER_AUTO_PROBABILITY = 0.5
# Any other weight is nonzero with this probability, N(0, 1) * this many slider units per unit stat.
SLIDER_RANDOM_WEIGHT_PROBABILITY = 0.04
SLIDER_RANDOM_WEIGHT_SCALE = 40.0

# Photo statistics the slider step sees, each roughly zero for a typical photo and O(1) in range.
STATS = ("log_luminance", "amber_cast", "green_cast", "tonal_range", "chroma")
TYPICAL_LOG_LUMINANCE_KEY = 0.15  # log-average linear luminance of a typical photo
TYPICAL_TONAL_RANGE = 0.75  # 2nd..98th percentile spread of encoded luma
TYPICAL_CHROMA = 0.12  # mean max-min of encoded RGB
LUMINANCE_FLOOR = 2.0**-10  # darker pixels count as this in log-average luminance (sensor noise)

# 1. Exposure to a key: gain = (key / measured)^degree * 2^offset in linear light.
EXPOSURE_PROBABILITY = 0.7
EXPOSURE_KEY_RANGE = (0.08, 0.28)  # target log-average luminance, drawn log-uniform
EXPOSURE_DEGREE_RANGE = (0.0, 1.0)  # 0 = fixed shift only, 1 = fully normalising
EXPOSURE_OFFSET_STD_EV = 0.35
EXPOSURE_MAX_EV = 3.0  # total gain clamped to +-3 EV

# 2. White balance: neutralise the grey-world cast by a degree, then add a rendering bias.
WHITE_BALANCE_PROBABILITY = 0.7
WB_DEGREE_RANGE = (0.0, 1.0)
WB_MAX_CORRECTION_STOPS = 0.6  # the estimated cast is clamped to this, per channel (auto-WB fails gently)
WB_TEMPERATURE_MEAN_STOPS = 0.05  # editors lean warm
WB_TEMPERATURE_STD_STOPS = 0.2  # log2(R/B) bias along the blue-amber axis
WB_TEMPERATURE_MAX_STOPS = 0.6
WB_TINT_STD_STOPS = 0.06  # green gain; green-magenta casts are rarer and smaller
WB_TINT_MAX_STOPS = 0.2
WB_NEUTRAL_CHROMA = 0.15  # grey world weights near-neutral pixels: weight = exp(-chroma / this)

# 6. Channel mixing in linear light: identity plus small off-diagonal terms.
CHANNEL_MIX_PROBABILITY = 0.2
CHANNEL_MIX_TERM_PROBABILITY = 0.5  # each off-diagonal term
CHANNEL_MIX_MAX_TERM = 0.12
CHANNEL_MIX_KEEP_GREY_PROBABILITY = 0.7  # rows renormalised to sum to 1 so grey stays grey

# 3. Tone curve, on sRGB-encoded values: per channel (changes saturation, like Lightroom's curve) or on
# luma only (keeps colours).
TONE_ON_LUMA_PROBABILITY = 0.3
LEVELS_PROBABILITY = 0.3  # auto-levels: stretch the photo's low..high luma percentiles to 0..1
LEVELS_LOW_PERCENT_RANGE = (0.0, 3.0)
LEVELS_HIGH_PERCENT_RANGE = (97.0, 100.0)
LEVELS_DEGREE_RANGE = (0.3, 1.0)
LEVELS_MAX_STRETCH = 2.0  # never stretch the range by more than this (flat photos stay flat-ish)
SHOULDER_PROBABILITY = 0.35  # soft highlight roll-off above a knee instead of a hard clip
SHOULDER_KNEE_RANGE = (0.65, 0.95)
GAMMA_PROBABILITY = 0.4  # midtone brightness: p ** 2^-g
GAMMA_STD_STOPS = 0.25
GAMMA_MAX_STOPS = 0.6
CHANNEL_GAMMA_PROBABILITY = 0.1  # slightly different curves per channel (film-like crossover)
CHANNEL_GAMMA_STD_STOPS = 0.07
CONTRAST_PROBABILITY = 0.6  # S-curve p + c (smoothstep(p) - p), monotone for c in [-1, 1]
CONTRAST_MEAN = 0.2  # editors add contrast more often than they remove it
CONTRAST_STD = 0.35
CONTRAST_RANGE = (-0.7, 1.0)
FADE_PROBABILITY = 0.3  # matte look: black lifted to this
FADE_RANGE = (0.02, 0.16)
WHITE_POINT_PROBABILITY = 0.2  # white lowered to this
WHITE_POINT_RANGE = (0.85, 0.98)

# 4. Colour, in the opponent plane (u, v) = (B - Y, R - Y) of encoded values, Y = Rec. 709 luma.
SATURATION_PROBABILITY = 0.5  # chroma scaled by 1 + s
SATURATION_STD = 0.2
SATURATION_RANGE = (-0.6, 0.6)
MONOCHROME_PROBABILITY = 0.03  # black and white: saturation -1
VIBRANCE_PROBABILITY = 0.4  # chroma scaled by 1 + v (1 - C / VIBRANCE_FULL_CHROMA)+
VIBRANCE_RANGE = (-0.4, 0.8)
VIBRANCE_FULL_CHROMA = 0.35  # colours this saturated are not touched by vibrance
SKIN_PROTECTION_PROBABILITY = 0.5  # of vibrance styles: skin-ish hues get less vibrance
SKIN_PROTECTION_RANGE = (0.5, 1.0)
HUE_ROTATION_PROBABILITY = 0.1  # every hue rotated by a small angle
HUE_ROTATION_MAX_DEGREES = 10.0
HUE_BAND_PROBABILITY = 0.2  # one band of hues moved towards another hue
HUE_BAND_SHIFT_RANGE = (0.2, 0.7)  # fraction of the way from the band's hue to the target hue
HUE_BAND_SHARPNESS = 4.0  # weight ((1 + cos dh) / 2)^sharpness: about +-50 degrees wide
HUE_BAND_MIN_CHROMA = 0.04  # greys have no hue: weight fades in by this chroma

# 5. Split toning: shadows and highlights pushed towards two hues (luma kept).
SPLIT_TONING_PROBABILITY = 0.3
SPLIT_CLASSIC_PAIR_PROBABILITY = 0.6  # one of the classic pairs below, else two random hues
SPLIT_HUE_JITTER_DEGREES = 15.0
SPLIT_STRENGTH_RANGE = (0.015, 0.09)  # opponent-plane offset at full weight
SPLIT_BALANCE_STOPS = 1.0  # highlight weight Y^(2^b), b in +-1: where shadows end and highlights start

# Reference colours (sRGB-encoded) whose hues name the hue choices above.
RED, ORANGE, YELLOW = (0.85, 0.2, 0.15), (1.0, 0.6, 0.2), (0.95, 0.85, 0.2)
GREEN, TEAL, CYAN = (0.3, 0.6, 0.2), (0.1, 0.5, 0.5), (0.3, 0.8, 0.9)
BLUE, PURPLE = (0.15, 0.3, 0.8), (0.45, 0.25, 0.65)
SKIN = (0.87, 0.67, 0.55)
# (shadow hue, highlight hue) pairs colourists reach for: teal & orange, cool & warm, cross-processing.
SPLIT_CLASSIC_PAIRS = ((TEAL, ORANGE), (BLUE, YELLOW), (PURPLE, ORANGE), (GREEN, YELLOW), (TEAL, SKIN))
# (band, target) hue moves: yellow-green foliage, teal greens, teal skies, deeper blues, warmer skin.
HUE_BAND_MOVES = ((GREEN, YELLOW), (GREEN, TEAL), (BLUE, CYAN), (BLUE, PURPLE), (ORANGE, RED), (SKIN, YELLOW))

CHUNK_IMAGES = 64  # images processed together: big enough to batch, small enough to stay in cache
HISTOGRAM_BINS = 256
STATS_PIXELS = 1024  # photo statistics look at about this many pixels
# The contact sheet shows crops of natural photos (statistics use the base model's photos).
SHEET_PHOTOS = ("astronaut", "chelsea", "coffee", "sklearn:china.jpg", "sklearn:flower.jpg", "rocket")

LUMINANCE = (0.2126, 0.7152, 0.0722)  # Y of linear sRGB (IEC 61966-2-1)


# --- styles ------------------------------------------------------------------------------------------


@dataclass
class Styles:
    """A batch of S styles: every field is a tensor with leading dimension S (float32 unless noted).

    Angles are radians in the (u, v) = (B - Y, R - Y) opponent plane; stops are log2 units.
    """

    slider_only: torch.Tensor  # bool: purely editor sliders
    slider_first: torch.Tensor  # bool: a slider step runs first (always true for slider_only)
    slider_bias: torch.Tensor  # (S, 12) b, slider units
    slider_weights: torch.Tensor  # (S, 12, len(STATS)) W, slider units per unit statistic
    exposure_key: torch.Tensor  # target log-average luminance
    exposure_degree: torch.Tensor  # 0 = no normalisation, 1 = full
    exposure_offset: torch.Tensor  # EV added after normalising
    wb_degree: torch.Tensor  # fraction of the grey-world cast removed
    wb_temperature: torch.Tensor  # stops of log2(R/B) added (warm > 0)
    wb_tint: torch.Tensor  # stops of green removed (magenta > 0)
    channel_mix: torch.Tensor  # (S, 3, 3) linear RGB -> linear RGB
    tone_on_luma: torch.Tensor  # bool: tone curve moves luma only, else each channel
    levels_low: torch.Tensor  # percentile (0-1) mapped to black by auto-levels
    levels_high: torch.Tensor  # percentile (0-1) mapped to white
    levels_degree: torch.Tensor  # 0 = no auto-levels
    shoulder_knee: torch.Tensor  # highlights above this roll off softly; 1 = hard clip
    gamma: torch.Tensor  # (S, 3) per-channel exponent on encoded values (midtone brightness)
    contrast: torch.Tensor  # S-curve amount in [-1, 1]
    black_point: torch.Tensor  # output of input black (fade)
    white_point: torch.Tensor  # output of input white
    saturation: torch.Tensor  # chroma scale - 1
    vibrance: torch.Tensor  # extra chroma scale for muted colours
    skin_protection: torch.Tensor  # 0..1: how much vibrance spares skin hues
    hue_rotation: torch.Tensor  # angle added to every hue
    band_hue: torch.Tensor  # centre of the moved band of hues
    band_shift: torch.Tensor  # angle the band's centre moves by (0 = off)
    shadow_hue: torch.Tensor
    shadow_strength: torch.Tensor
    highlight_hue: torch.Tensor
    highlight_strength: torch.Tensor
    split_balance: torch.Tensor  # stops: > 0 gives shadows more of the tonal range

    def __len__(self) -> int:
        return self.slider_only.shape[0]

    def take(self, index: torch.Tensor) -> Styles:
        """The styles at ``index`` (a long tensor), e.g. one per image."""
        return Styles(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


def identity_styles(n: int) -> Styles:
    """n styles that change nothing (compositions with every component off); a base to build on."""

    def full(value: float) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.float32)

    return Styles(
        slider_only=torch.zeros(n, dtype=torch.bool),
        slider_first=torch.zeros(n, dtype=torch.bool),
        slider_bias=torch.zeros(n, len(ADJUSTMENTS)),
        slider_weights=torch.zeros(n, len(ADJUSTMENTS), len(STATS)),
        exposure_key=full(TYPICAL_LOG_LUMINANCE_KEY),
        exposure_degree=full(0.0),
        exposure_offset=full(0.0),
        wb_degree=full(0.0),
        wb_temperature=full(0.0),
        wb_tint=full(0.0),
        channel_mix=torch.eye(3).expand(n, 3, 3).clone(),
        tone_on_luma=torch.zeros(n, dtype=torch.bool),
        levels_low=full(0.0),
        levels_high=full(1.0),
        levels_degree=full(0.0),
        shoulder_knee=full(1.0),
        gamma=torch.ones(n, 3),
        contrast=full(0.0),
        black_point=full(0.0),
        white_point=full(1.0),
        saturation=full(0.0),
        vibrance=full(0.0),
        skin_protection=full(0.0),
        hue_rotation=full(0.0),
        band_hue=full(0.0),
        band_shift=full(0.0),
        shadow_hue=full(0.0),
        shadow_strength=full(0.0),
        highlight_hue=full(0.0),
        highlight_strength=full(0.0),
        split_balance=full(0.0),
    )


def _hue(rgb: tuple[float, float, float]) -> float:
    """Angle of an encoded sRGB colour in the (u, v) = (B - Y, R - Y) plane."""
    y = sum(w * c for w, c in zip(LUMA, rgb, strict=True))
    return math.atan2(rgb[0] - y, rgb[2] - y)


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles into (-pi, pi]."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def random_styles(n: int, gen: torch.Generator) -> Styles:
    """n random styles; all randomness of the generator lives here (``apply`` is deterministic)."""

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((n, *shape), generator=gen)

    def normal(mean: float, std: float, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (mean + std * torch.randn((n, *shape), generator=gen)).clamp(lo, hi)

    def coin(p: float, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=gen) < p

    def pick(choices: tuple) -> torch.Tensor:
        return torch.randint(0, len(choices), (n,), generator=gen)

    s = identity_styles(n)

    def switch(name: str, on: torch.Tensor, value: torch.Tensor) -> None:
        """Field ``name`` takes ``value`` where the component is on; identity elsewhere."""
        old = getattr(s, name)
        setattr(s, name, torch.where(on.reshape(-1, *([1] * (old.ndim - 1))), value, old))

    # 8. Slider styles: sparse biases, "auto" couplings with random strength, a few random weights.
    s.slider_only = coin(SLIDER_ONLY_PROBABILITY)
    s.slider_first = s.slider_only | coin(SLIDER_FIRST_PROBABILITY)
    scale = torch.tensor([float(SLIDER_BIAS_SCALE[a]) for a in ADJUSTMENTS])
    s.slider_bias = (
        uniform(-1.0, 1.0, len(ADJUSTMENTS)) * scale * coin(SLIDER_ACTIVE_PROBABILITY, len(ADJUSTMENTS))
    )
    weights = torch.randn((n, len(ADJUSTMENTS), len(STATS)), generator=gen) * SLIDER_RANDOM_WEIGHT_SCALE
    weights = weights * coin(SLIDER_RANDOM_WEIGHT_PROBABILITY, len(ADJUSTMENTS), len(STATS))
    for slider, stat, gain in SLIDER_AUTO_COUPLINGS:
        strength = uniform(0.0, 1.0) * coin(SLIDER_AUTO_PROBABILITY)
        weights[:, ADJUSTMENTS.index(slider), STATS.index(stat)] = gain * strength
    s.slider_weights = weights * s.slider_first.reshape(n, 1, 1)
    s.slider_bias = s.slider_bias * s.slider_first.reshape(n, 1)
    composition = ~s.slider_only

    # 1. Exposure.
    on = composition & coin(EXPOSURE_PROBABILITY)
    lo, hi = (math.log(k) for k in EXPOSURE_KEY_RANGE)
    switch("exposure_key", on, uniform(lo, hi).exp())
    switch("exposure_degree", on, uniform(*EXPOSURE_DEGREE_RANGE))
    max_offset = 3 * EXPOSURE_OFFSET_STD_EV
    switch("exposure_offset", on, normal(0.0, EXPOSURE_OFFSET_STD_EV, -max_offset, max_offset))

    # 2. White balance.
    on = composition & coin(WHITE_BALANCE_PROBABILITY)
    switch("wb_degree", on, uniform(*WB_DEGREE_RANGE))
    t_max, g_max = WB_TEMPERATURE_MAX_STOPS, WB_TINT_MAX_STOPS
    switch("wb_temperature", on, normal(WB_TEMPERATURE_MEAN_STOPS, WB_TEMPERATURE_STD_STOPS, -t_max, t_max))
    switch("wb_tint", on, normal(0.0, WB_TINT_STD_STOPS, -g_max, g_max))

    # 6. Channel mix: off-diagonal terms, rows optionally renormalised so that grey stays grey.
    on = composition & coin(CHANNEL_MIX_PROBABILITY)
    terms = uniform(-CHANNEL_MIX_MAX_TERM, CHANNEL_MIX_MAX_TERM, 3, 3) * coin(
        CHANNEL_MIX_TERM_PROBABILITY, 3, 3
    )
    mix = torch.eye(3) + terms * (1.0 - torch.eye(3))
    keep_grey = coin(CHANNEL_MIX_KEEP_GREY_PROBABILITY).reshape(n, 1, 1)
    mix = torch.where(keep_grey, mix / mix.sum(dim=2, keepdim=True), mix)
    switch("channel_mix", on, mix)

    # 3. Tone curve.
    s.tone_on_luma = composition & coin(TONE_ON_LUMA_PROBABILITY)
    on = composition & coin(LEVELS_PROBABILITY)
    switch("levels_low", on, uniform(*LEVELS_LOW_PERCENT_RANGE) / 100.0)
    switch("levels_high", on, uniform(*LEVELS_HIGH_PERCENT_RANGE) / 100.0)
    switch("levels_degree", on, uniform(*LEVELS_DEGREE_RANGE))
    switch("shoulder_knee", composition & coin(SHOULDER_PROBABILITY), uniform(*SHOULDER_KNEE_RANGE))
    g = normal(0.0, GAMMA_STD_STOPS, -GAMMA_MAX_STOPS, GAMMA_MAX_STOPS) * coin(GAMMA_PROBABILITY)
    per_channel = normal(0.0, CHANNEL_GAMMA_STD_STOPS, -1.0, 1.0, 3) * coin(CHANNEL_GAMMA_PROBABILITY, 1)
    switch("gamma", composition, torch.exp2(-(g.reshape(n, 1) + per_channel)))
    on = composition & coin(CONTRAST_PROBABILITY)
    switch("contrast", on, normal(CONTRAST_MEAN, CONTRAST_STD, *CONTRAST_RANGE))
    switch("black_point", composition & coin(FADE_PROBABILITY), uniform(*FADE_RANGE))
    switch("white_point", composition & coin(WHITE_POINT_PROBABILITY), uniform(*WHITE_POINT_RANGE))

    # 4. Colour.
    on = composition & coin(SATURATION_PROBABILITY)
    switch("saturation", on, normal(0.0, SATURATION_STD, *SATURATION_RANGE))
    switch("saturation", composition & coin(MONOCHROME_PROBABILITY), torch.full((n,), -1.0))
    vibrant = composition & coin(VIBRANCE_PROBABILITY)
    switch("vibrance", vibrant, uniform(*VIBRANCE_RANGE))
    switch("skin_protection", vibrant & coin(SKIN_PROTECTION_PROBABILITY), uniform(*SKIN_PROTECTION_RANGE))
    max_rotation = math.radians(HUE_ROTATION_MAX_DEGREES)
    switch("hue_rotation", composition & coin(HUE_ROTATION_PROBABILITY), uniform(-max_rotation, max_rotation))
    move = pick(HUE_BAND_MOVES)
    band = torch.tensor([_hue(b) for b, _ in HUE_BAND_MOVES])[move]
    target = torch.tensor([_hue(t) for _, t in HUE_BAND_MOVES])[move]
    on = composition & coin(HUE_BAND_PROBABILITY)
    switch("band_hue", on, band)
    switch("band_shift", on, _wrap(target - band) * uniform(*HUE_BAND_SHIFT_RANGE))

    # 5. Split toning.
    on = composition & coin(SPLIT_TONING_PROBABILITY)
    pair = pick(SPLIT_CLASSIC_PAIRS)
    classic = coin(SPLIT_CLASSIC_PAIR_PROBABILITY)
    jitter = math.radians(SPLIT_HUE_JITTER_DEGREES)
    for name, column in (("shadow", 0), ("highlight", 1)):
        hue = torch.tensor([_hue(p[column]) for p in SPLIT_CLASSIC_PAIRS])[pair] + uniform(-jitter, jitter)
        hue = torch.where(classic, hue, uniform(-math.pi, math.pi))
        switch(f"{name}_hue", on, _wrap(hue))
        switch(f"{name}_strength", on, uniform(*SPLIT_STRENGTH_RANGE))
    switch("split_balance", on, uniform(-SPLIT_BALANCE_STOPS, SPLIT_BALANCE_STOPS))
    return s


# --- photo statistics ----------------------------------------------------------------------------------


def _sample(x: torch.Tensor) -> torch.Tensor:
    """Every k-th pixel of (..., P), at most about STATS_PIXELS: statistics need no more."""
    return x[..., :: max(1, x.shape[-1] // STATS_PIXELS)]


def _percentiles(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row percentiles of values (N, P) in [0, 1] at fractions q (N, K), from a histogram.

    A histogram costs one pass instead of a sort; 256 bins are as fine as 8-bit input.
    """
    n, p = values.shape
    bins = (values.clamp(0.0, 1.0) * (HISTOGRAM_BINS - 1)).round_().long()
    bins += torch.arange(n).reshape(n, 1) * HISTOGRAM_BINS
    counts = torch.bincount(bins.view(-1), minlength=n * HISTOGRAM_BINS).view(n, HISTOGRAM_BINS)
    cdf = counts.cumsum(dim=1).to(torch.float32)
    index = torch.searchsorted(cdf, (q * p).contiguous())
    return index.clamp(max=HISTOGRAM_BINS - 1).to(torch.float32) / (HISTOGRAM_BINS - 1)


def _luminance(linear: torch.Tensor) -> torch.Tensor:
    """(N, 3, P) linear RGB -> (N, P) luminance Y."""
    return LUMINANCE[0] * linear[:, 0] + LUMINANCE[1] * linear[:, 1] + LUMINANCE[2] * linear[:, 2]


def _luma(encoded: torch.Tensor) -> torch.Tensor:
    """(N, 3, P) encoded RGB -> (N, P) Rec. 709 luma."""
    return LUMA[0] * encoded[:, 0] + LUMA[1] * encoded[:, 1] + LUMA[2] * encoded[:, 2]


def _log_key(linear: torch.Tensor) -> torch.Tensor:
    """Log-average luminance (N,): the photo's "key", as auto-exposure and Reinhard's operator use it."""
    return torch.log2(_luminance(linear).clamp_min(LUMINANCE_FLOOR)).mean(dim=1).exp2()


def _grey_world(linear: torch.Tensor) -> torch.Tensor:
    """Mean linear RGB (N, 3) over near-neutral pixels: what auto white balance takes for grey.

    Plain grey world turns a red flower's photo cyan; weighting pixels by how neutral they already are
    keeps it to the light's cast.
    """
    top = linear.amax(dim=1)
    chroma = (top - linear.amin(dim=1)) / (top + 0.01)
    weight = torch.exp(chroma * (-1.0 / WB_NEUTRAL_CHROMA)).unsqueeze(1)
    return (linear * weight).sum(dim=2) / weight.sum(dim=2).clamp_min(1e-6)


def photo_stats(linear: torch.Tensor) -> torch.Tensor:
    """The slider styles' inputs, (N, len(STATS)), from linear RGB (N, 3, P); about 0 when typical."""
    linear = _sample(linear)
    r, g, b = _grey_world(linear).clamp_min(1e-4).unbind(1)
    encoded = linear_to_srgb(linear)
    luma = _luma(encoded)
    spread = _percentiles(luma, torch.tensor([[0.02, 0.98]]).expand(luma.shape[0], 2))
    chroma = (encoded.amax(dim=1) - encoded.amin(dim=1)).mean(dim=1)
    return torch.stack(
        (
            torch.log2(_log_key(linear) / TYPICAL_LOG_LUMINANCE_KEY),
            torch.log2(r / b),
            torch.log2(g / (r * b).sqrt()),
            spread[:, 1] - spread[:, 0] - TYPICAL_TONAL_RANGE,
            chroma - TYPICAL_CHROMA,
        ),
        dim=1,
    )


def _slider_values(styles: Styles, linear: torch.Tensor) -> torch.Tensor:
    """sliders = clip(round(b + W @ stats)), (N, 12) float32 integers; ``styles`` has one row per image."""
    raw = styles.slider_bias + (styles.slider_weights @ photo_stats(linear).unsqueeze(2)).squeeze(2)
    return raw.round().clamp(-100.0, 100.0)


# --- the pipeline --------------------------------------------------------------------------------------
# Images are planar float32 (N, C, P): each channel one contiguous row of P = H * W pixels. ``s`` is a
# Styles with one row per image.


def _for_some(on: torch.Tensor, s: Styles, x: torch.Tensor, step) -> torch.Tensor:
    """``step(s, x)`` for the images where ``on``, written back into x; the others pass unchanged.

    Components are off for most styles: this way they cost nothing there.
    """
    index = on.nonzero().squeeze(1)
    if len(index) == len(on):
        return step(s, x)
    if len(index):
        x[index] = step(s.take(index), x[index])
    return x


def _to_planar_linear(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> linear float32 (N, 3, H*W)."""
    n = images.shape[0]
    return srgb_to_linear(images.permute(0, 3, 1, 2).reshape(n, 3, -1))


def _white_balance_and_exposure(s: Styles, linear: torch.Tensor) -> torch.Tensor:
    """Per-channel gains in linear light, (N, 3, 1): the camera-raw part of the pipeline."""
    sample = _sample(linear)
    luminance_weights = torch.tensor(LUMINANCE)
    # Neutralise (part of) the grey-world cast, then add the style's rendering bias.
    grey = _grey_world(sample).clamp_min(1e-4)
    cast = torch.log2(grey / (grey * luminance_weights).sum(dim=1, keepdim=True))
    cast = cast.clamp(-WB_MAX_CORRECTION_STOPS, WB_MAX_CORRECTION_STOPS)
    bias = torch.stack((0.5 * s.wb_temperature, -s.wb_tint, -0.5 * s.wb_temperature), dim=1)
    gains = torch.exp2(bias - s.wb_degree.unsqueeze(1) * cast)
    # White balance moves colour, not brightness: grey's luminance stays.
    gains = gains / (gains * luminance_weights).sum(dim=1, keepdim=True)

    # Exposure towards the key, measured after white balance.
    key = _log_key(sample * gains.unsqueeze(2))
    ev = s.exposure_degree * torch.log2(s.exposure_key / key) + s.exposure_offset
    gains = gains * torch.exp2(ev.clamp(-EXPOSURE_MAX_EV, EXPOSURE_MAX_EV)).unsqueeze(1)
    return gains.unsqueeze(2)


def _levels(s: Styles, luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Auto-levels' input black and white (N, 1, 1) from the luma (N, P) percentiles; 0 and 1 when off."""
    q = torch.stack((s.levels_low, s.levels_high), dim=1)
    low, high = _percentiles(_sample(luma), q).unbind(1)
    low, high = s.levels_degree * low, 1.0 - s.levels_degree * (1.0 - high)
    # Never stretch by more than LEVELS_MAX_STRETCH: keep the range's middle, widen the range.
    width = (high - low).clamp_min(1.0 / LEVELS_MAX_STRETCH)
    middle = (0.5 * (low + high)).clamp(0.5 * width, 1.0 - 0.5 * width)
    low, high = middle - 0.5 * width, middle + 0.5 * width
    return low.reshape(-1, 1, 1), high.reshape(-1, 1, 1)


def _tone_curve(s: Styles, t: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The tone curve on encoded values t (N, C, P), C = 3 (per channel) or 1 (luma).

    Levels, soft shoulder (or clip), midtone gamma, S-curve, black and white points: each step is
    monotone, so tones never invert.
    """
    t = ((t - low) / (high - low)).clamp_min_(0.0)
    # Shoulder: slope 1 at the knee, approaching 1 (white) asymptotically; knee 1 is a hard clip.
    knee = s.shoulder_knee.reshape(-1, 1, 1)
    room = (1.0 - knee).clamp_min(1e-6)
    over = (t - knee).clamp_min_(0.0)
    t = torch.minimum(t, knee) + room * over / (room + over)

    def midtones(s: Styles, t: torch.Tensor) -> torch.Tensor:
        gamma = s.gamma.unsqueeze(2) if t.shape[1] == 3 else s.gamma.mean(dim=1).reshape(-1, 1, 1)
        return t.pow(gamma)

    t = _for_some((s.gamma != 1.0).any(dim=1), s, t, midtones)
    c = s.contrast.reshape(-1, 1, 1)
    t = t + c * (t * t * (3.0 - 2.0 * t) - t)  # smoothstep S-curve: slope 1 + c/2 at 0.5
    black, white = s.black_point.reshape(-1, 1, 1), s.white_point.reshape(-1, 1, 1)
    return black + (white - black) * t


def _tone(s: Styles, encoded: torch.Tensor) -> torch.Tensor:
    """Tone curve per channel (saturation follows contrast, as in Lightroom) or on luma (colour kept)."""
    luma = _luma(encoded).unsqueeze(1)
    low, high = _levels(s, luma.squeeze(1))
    on_luma = s.tone_on_luma.reshape(-1, 1, 1)
    curved = _tone_curve(s, torch.where(on_luma, luma, encoded), low, high)
    return torch.where(on_luma, encoded + (curved - luma), curved)


def _colour(s: Styles, uv: torch.Tensor) -> torch.Tensor:
    """Saturation, vibrance and a global hue rotation on the opponent plane uv (N, 2, P)."""
    n = uv.shape[0]
    u, v = uv[:, 0], uv[:, 1]
    chroma = torch.sqrt(u * u + v * v)
    # Vibrance: muted colours gain most, and skin-ish hues as little as the style's skin protection says.
    muted = (1.0 - chroma * (1.0 / VIBRANCE_FULL_CHROMA)).clamp_min_(0.0)
    skin_hue = _hue(SKIN)
    skin = ((u * math.cos(skin_hue) + v * math.sin(skin_hue)) / (chroma + 1e-4)).clamp_min_(0.0)
    skin = skin * skin
    muted = muted * (1.0 - s.skin_protection.reshape(n, 1) * skin * skin)
    factor = (1.0 + s.saturation.reshape(n, 1)) * (1.0 + s.vibrance.reshape(n, 1) * muted)
    cos = s.hue_rotation.cos().reshape(n, 1) * factor
    sin = s.hue_rotation.sin().reshape(n, 1) * factor
    return torch.stack((u * cos - v * sin, u * sin + v * cos), dim=1)


def _hue_band(s: Styles, uv: torch.Tensor) -> torch.Tensor:
    """Rotate the hues near ``band_hue`` by up to ``band_shift`` (e.g. greens towards yellow)."""
    n = uv.shape[0]
    u, v = uv[:, 0], uv[:, 1]
    chroma = torch.sqrt(u * u + v * v)
    band_u, band_v = s.band_hue.cos().reshape(n, 1), s.band_hue.sin().reshape(n, 1)
    closeness = (1.0 + (u * band_u + v * band_v) / (chroma + 1e-4)) * 0.5  # (1 + cos dh) / 2
    weight = closeness**HUE_BAND_SHARPNESS * (chroma / (chroma + HUE_BAND_MIN_CHROMA))
    angle = s.band_shift.reshape(n, 1) * weight
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack((u * cos - v * sin, u * sin + v * cos), dim=1)


def _split_toning(s: Styles, yuv: torch.Tensor) -> torch.Tensor:
    """Shadows pushed towards one hue, highlights towards another; the two weights sum to 1."""
    n = yuv.shape[0]
    highlights = yuv[:, :1].clamp(0.0, 1.0).pow(torch.exp2(s.split_balance).reshape(n, 1, 1))
    shadow = torch.stack((s.shadow_hue.cos(), s.shadow_hue.sin()), dim=1) * s.shadow_strength.unsqueeze(1)
    highlight = torch.stack((s.highlight_hue.cos(), s.highlight_hue.sin()), dim=1)
    highlight = highlight * s.highlight_strength.unsqueeze(1)
    shadow, highlight = shadow.unsqueeze(2), highlight.unsqueeze(2)
    uv = yuv[:, 1:] + shadow + highlights * (highlight - shadow)
    return torch.cat((yuv[:, :1], uv), dim=1)


def _colour_steps(s: Styles, encoded: torch.Tensor) -> torch.Tensor:
    """Steps 4 and 5 on encoded RGB (N, 3, P), in luma + opponent plane (y, u, v) = (Y, B - Y, R - Y)."""
    y = _luma(encoded)
    yuv = torch.stack((y, encoded[:, 2] - y, encoded[:, 0] - y), dim=1)
    coloured = (s.saturation != 0) | (s.vibrance != 0) | (s.hue_rotation != 0)
    yuv[:, 1:] = _for_some(coloured, s, yuv[:, 1:], _colour)
    yuv[:, 1:] = _for_some(s.band_shift != 0, s, yuv[:, 1:], _hue_band)
    yuv = _for_some((s.shadow_strength > 0) | (s.highlight_strength > 0), s, yuv, _split_toning)
    y, u, v = yuv.unbind(1)
    r, b = y + v, y + u
    g = (y - LUMA[0] * r - LUMA[2] * b) * (1.0 / LUMA[1])
    return torch.stack((r, g, b), dim=1)


def _edit(s: Styles, images: torch.Tensor) -> torch.Tensor:
    """Apply compositions (one style row per image) to uint8 (N, H, W, 3); returns uint8."""
    n, h, w, _ = images.shape
    linear = _to_planar_linear(images)
    # Linear light: white balance and exposure gains, then the channel mix.
    linear = linear * _white_balance_and_exposure(s, linear)
    mixed = (s.channel_mix != torch.eye(3)).flatten(1).any(dim=1)
    linear = _for_some(mixed, s, linear, lambda s, x: torch.bmm(s.channel_mix, x).clamp_min_(0.0))
    encoded = _tone(s, linear_to_srgb(linear))
    colour = (s.saturation != 0) | (s.vibrance != 0) | (s.hue_rotation != 0) | (s.band_shift != 0)
    colour |= (s.shadow_strength > 0) | (s.highlight_strength > 0)
    encoded = _for_some(colour, s, encoded, _colour_steps)
    out = torch.empty_like(images)
    out.permute(0, 3, 1, 2).copy_(encoded.clamp_(0.0, 1.0).mul_(255.0).round_().view(n, 3, h, w))
    return out


@torch.no_grad()
def apply(styles: Styles, which: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit each image with its style.

    images: uint8 (N, H, W, 3); which: long (N,), the index of the style that edits each image.
    Returns (afters uint8 (N, H, W, 3), sliders float32 (N, 12)): for slider styles the editor's slider
    values (integers in [-100, 100]) that produce the after exactly, NaN rows for compositions.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    if which.shape != (images.shape[0],):
        raise ValueError(f"which must have shape ({images.shape[0]},), got {tuple(which.shape)}")
    afters = images.clone()
    sliders = torch.full((images.shape[0], len(ADJUSTMENTS)), float("nan"))
    for start in range(0, images.shape[0], CHUNK_IMAGES):
        s = styles.take(which[start : start + CHUNK_IMAGES])
        x = afters[start : start + CHUNK_IMAGES]  # a view: edits land in afters
        first = s.slider_first.nonzero().squeeze(1)
        if len(first):
            values = _slider_values(s.take(first), _to_planar_linear(x[first]))
            x[first] = apply_batch(x[first], values)
            only = s.slider_only[first]
            sliders[start + first[only]] = values[only]
        rest = (~s.slider_only).nonzero().squeeze(1)
        if len(rest):
            x[rest] = _edit(s.take(rest), x[rest])
    return afters, sliders


# --- contact sheet and statistics ------------------------------------------------------------------------


def _photos(n: int, seed: int, names: tuple[str, ...] | None = None) -> torch.Tensor:
    """n random 64x64 crops of sample photos (default: the base model's), one photo after another."""
    photos = [sample_photo(name) for name in names or BASE_PHOTOS]
    rng = np.random.default_rng(seed)
    crops = [random_crops([photos[i % len(photos)]], 1, rng)[0] for i in range(n)]
    return torch.from_numpy(np.stack(crops))


def main(argv: list[str]) -> None:
    """Contact sheet at argv[0]; the styles' strength (dE00 percentiles) and speed on stdout."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m rlcore.stylegen SHEET.png")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)

    # Contact sheet: a row of befores, then one row per style.
    n_styles, n_photos = 8, 6
    styles = random_styles(n_styles, gen)
    photos = _photos(n_photos, seed=1, names=SHEET_PHOTOS)
    which = torch.arange(n_styles).repeat_interleave(n_photos)
    afters, _ = apply(styles, which, photos.repeat(n_styles, 1, 1, 1))
    grid = torch.cat((photos, afters)).reshape(n_styles + 1, n_photos, *photos.shape[1:])
    sheet = grid.permute(0, 2, 1, 3, 4).reshape(grid.shape[0] * grid.shape[2], -1, 3).numpy()
    image = Image.fromarray(np.ascontiguousarray(sheet))
    image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST).save(argv[0])
    kinds = ["sliders" if k else "composition" for k in styles.slider_only.tolist()]
    print(f"wrote {argv[0]}: befores, then one row per style: {', '.join(kinds)}")

    # How strong the styles are: mean dE00 between before and after.
    n = 2000
    styles = random_styles(n, gen)
    photos = _photos(n, seed=2)
    afters, sliders = apply(styles, torch.arange(n), photos)
    de = mean_delta_e(afters, srgb_to_lab(photos))
    quantiles = torch.tensor([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    values = torch.quantile(de, quantiles)
    print("mean dE00 before->after, percentiles:")
    percentiles = (
        f"p{round(100 * q)}={v:.1f}" for q, v in zip(quantiles.tolist(), values.tolist(), strict=True)
    )
    print("  " + "  ".join(percentiles))
    slider = ~sliders.isnan().any(dim=1)
    for label, mask in (("slider styles", slider), ("compositions", ~slider)):
        print(f"  {label}: n={int(mask.sum())} median={de[mask].median():.1f}")

    # Speed on one thread.
    photos = photos.repeat(5, 1, 1, 1)
    which = torch.randint(0, n, (len(photos),), generator=gen)
    start = time.perf_counter()
    apply(styles, which, photos)
    seconds = time.perf_counter() - start
    print(f"speed: {len(photos) / seconds:.0f} images/s (64x64, one thread)")


if __name__ == "__main__":
    main(sys.argv[1:])
