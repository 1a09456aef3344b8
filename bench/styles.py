"""Synthetic expert styles for the quality benchmark, written independently of rlcore's editor.

Each style is a function uint8 (H, W, 3) -> uint8 (H, W, 3) that adapts to the photo (its exposure,
white balance, tonal range), built from colour-science (chromatic adaptation, Lab) and plain numpy tone
curves, split toning and auto-levels.  None of them is a composition of rlcore.editor's operations, so no
slider vector reproduces them exactly: the per-image optimum of the editor is the practical limit.

Also here: camera-like "befores" (random crops of offline photos with exposure / white-balance / contrast
jitter, again independent of the editor) and the train / held-out photo split.
"""

from __future__ import annotations

import warnings

import colour
import numpy as np

from rlcore.data import BASE_PHOTOS

warnings.filterwarnings("ignore", module="colour")

# Training pairs are cut from the base model's photos; held-out pairs only from the others, which neither
# the base model nor the training pairs have seen.
TRAIN_PHOTOS = BASE_PHOTOS
HELDOUT_PHOTOS = ("chelsea", "sklearn:flower.jpg", "matplotlib:grace_hopper.jpg")


# --- helpers -------------------------------------------------------------------------------------------


def _to_linear(img: np.ndarray) -> np.ndarray:
    return colour.cctf_decoding(img.astype(np.float64) / 255.0, function="sRGB")


def _to_u8(lin: np.ndarray) -> np.ndarray:
    enc = colour.cctf_encoding(np.clip(lin, 0.0, None), function="sRGB")
    return (np.clip(enc, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _luminance(lin: np.ndarray) -> np.ndarray:
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def _adapt(lin: np.ndarray, src_xy, dst_xy, transform: str = "CAT02") -> np.ndarray:
    """Von Kries chromatic adaptation of linear sRGB from white src_xy to white dst_xy."""
    xyz = colour.RGB_to_XYZ(lin, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False)
    src = colour.xy_to_XYZ(np.asarray(src_xy, dtype=np.float64))
    dst = colour.xy_to_XYZ(np.asarray(dst_xy, dtype=np.float64))
    out = colour.adaptation.chromatic_adaptation_VonKries(xyz, src, dst, transform=transform)
    return colour.XYZ_to_RGB(out, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_encoding=False)


def _grey_world_xy(lin: np.ndarray) -> np.ndarray:
    """The image's estimated illuminant (grey world, on mid-tones), as xy chromaticity."""
    y = _luminance(lin)
    m = (y > np.quantile(y, 0.1)) & (y < np.quantile(y, 0.97))
    mean = lin[m].mean(0) if m.sum() > 10 else lin.reshape(-1, 3).mean(0)
    xyz = colour.RGB_to_XYZ(mean, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False)
    return colour.XYZ_to_xy(xyz)


def _cct_xy(cct: float) -> np.ndarray:
    return colour.temperature.CCT_to_xy_CIE_D(cct)


D65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]


def _expose_to(lin: np.ndarray, median_target: float, lo: float = 0.4, hi: float = 5.0) -> np.ndarray:
    """Gain so that the median luminance becomes median_target (linear), within [lo, hi]."""
    med = float(np.median(_luminance(lin))) + 1e-4
    return lin * np.clip(median_target / med, lo, hi)


def _smooth_s(p: np.ndarray, amount: float) -> np.ndarray:
    """Smoothstep S-curve blended with identity (encoded values)."""
    p = np.clip(p, 0, 1)
    return (1 - amount) * p + amount * (p * p * (3 - 2 * p))


def _lab_chroma(lin: np.ndarray, scale: float) -> np.ndarray:
    xyz = colour.RGB_to_XYZ(lin, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False)
    lab = colour.XYZ_to_Lab(xyz)
    lab[..., 1:] *= scale
    return colour.XYZ_to_RGB(
        colour.Lab_to_XYZ(lab), colour.RGB_COLOURSPACES["sRGB"], apply_cctf_encoding=False
    )


def _split_tone(enc: np.ndarray, shadow_rgb, highlight_rgb, strength: float) -> np.ndarray:
    y = enc @ np.array([0.2126, 0.7152, 0.0722])
    w_sh = np.clip(1 - y / 0.5, 0, 1)[..., None]
    w_hi = np.clip((y - 0.5) / 0.5, 0, 1)[..., None]
    return enc + strength * (w_sh * (np.asarray(shadow_rgb) - 0.5) + w_hi * (np.asarray(highlight_rgb) - 0.5))


# --- styles ----------------------------------------------------------------------------------------------


def bright_airy(img: np.ndarray) -> np.ndarray:
    """Bright and airy: exposure set from the photo's median, neutralised cast, lifted shadows, soft colour."""
    lin = _to_linear(img)
    lin = _adapt(lin, _grey_world_xy(lin), _cct_xy(6200), "CAT16")
    lin = _expose_to(lin, 0.30)
    enc = colour.cctf_encoding(np.clip(lin, 0, None), function="sRGB")
    enc = np.clip(enc, 0, 1)
    enc = enc + 0.35 * enc * (1 - enc) ** 2  # open the shadows
    enc = 0.04 + 0.96 * enc  # a touch of matte
    lin = colour.cctf_decoding(np.clip(enc, 0, 1), function="sRGB")
    return _to_u8(_lab_chroma(lin, 0.85))


def warm_film(img: np.ndarray) -> np.ndarray:
    """Warm film: white balance to a warm 4800 K look, S-curve, teal shadows / orange highlights."""
    lin = _to_linear(img)
    lin = _adapt(lin, _grey_world_xy(lin), _cct_xy(5000), "CAT02")
    lin = _adapt(lin, D65, _cct_xy(4500), "CAT02")  # render D65-neutral as warm
    lin = _expose_to(lin, 0.20, 0.5, 3.0)
    enc = np.clip(colour.cctf_encoding(np.clip(lin, 0, None), function="sRGB"), 0, 1)
    enc = _smooth_s(enc, 0.45)
    enc = _split_tone(enc, (0.35, 0.55, 0.6), (0.65, 0.52, 0.35), 0.12)
    return _to_u8(colour.cctf_decoding(np.clip(enc, 0, 1), function="sRGB"))


def punchy_levels(img: np.ndarray) -> np.ndarray:
    """Punchy: per-channel auto-levels (0.5 / 99.5 %), mild S-curve, +30 % Lab chroma."""
    enc = img.astype(np.float64) / 255.0
    lo = np.quantile(enc.reshape(-1, 3), 0.005, axis=0)
    hi = np.quantile(enc.reshape(-1, 3), 0.995, axis=0)
    enc = np.clip((enc - lo) / np.maximum(hi - lo, 0.05), 0, 1)
    enc = _smooth_s(enc, 0.25)
    lin = colour.cctf_decoding(enc, function="sRGB")
    return _to_u8(_lab_chroma(lin, 1.3))


def moody_matte(img: np.ndarray) -> np.ndarray:
    """Moody: darker exposure from the photo's median, cool 7500 K balance, matte blacks, rolled-off whites."""
    lin = _to_linear(img)
    lin = _adapt(lin, _grey_world_xy(lin), _cct_xy(6500), "CAT02")
    lin = _adapt(lin, D65, _cct_xy(8000), "CAT02")  # cool
    lin = _expose_to(lin, 0.10, 0.3, 3.0)
    enc = np.clip(colour.cctf_encoding(np.clip(lin, 0, None), function="sRGB"), 0, 1)
    enc = 0.08 + 0.84 * enc  # matte black, rolled-off white
    lin = colour.cctf_decoding(enc, function="sRGB")
    return _to_u8(_lab_chroma(lin, 0.75))


def clean_neutral(img: np.ndarray) -> np.ndarray:
    """Clean: CAT16 grey-world white balance to D65, exposure normalised, contrast stretched on L* range."""
    lin = _to_linear(img)
    lin = _adapt(lin, _grey_world_xy(lin), D65, "CAT16")
    lin = _expose_to(lin, 0.18)
    xyz = colour.RGB_to_XYZ(lin, colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=False)
    lab = colour.XYZ_to_Lab(xyz)
    p2, p98 = np.quantile(lab[..., 0], [0.02, 0.98])
    span = max(p98 - p2, 20.0)
    lab[..., 0] = np.clip((lab[..., 0] - p2) * (92.0 / span) + 4.0, 0, 100)
    lin = colour.XYZ_to_RGB(
        colour.Lab_to_XYZ(lab), colour.RGB_COLOURSPACES["sRGB"], apply_cctf_encoding=False
    )
    return _to_u8(lin)


def golden_vintage(img: np.ndarray) -> np.ndarray:
    """Golden vintage: exposure from the photo, golden split toning, faded blacks, muted greens/blues."""
    lin = _to_linear(img)
    lin = _expose_to(lin, 0.22, 0.5, 3.0)
    lin = _adapt(lin, D65, _cct_xy(4000), "Bradford")
    enc = np.clip(colour.cctf_encoding(np.clip(lin, 0, None), function="sRGB"), 0, 1)
    enc = _split_tone(enc, (0.55, 0.45, 0.5), (0.7, 0.58, 0.3), 0.15)
    enc = 0.06 + 0.9 * np.clip(enc, 0, 1)
    lin = colour.cctf_decoding(np.clip(enc, 0, 1), function="sRGB")
    return _to_u8(_lab_chroma(lin, 0.8))


STYLES = {
    "bright_airy": bright_airy,
    "warm_film": warm_film,
    "punchy_levels": punchy_levels,
    "moody_matte": moody_matte,
    "clean_neutral": clean_neutral,
    "golden_vintage": golden_vintage,
}


# --- camera-like befores ---------------------------------------------------------------------------------


def camera_befores(thumbs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random exposure (-1.5..+1 EV), white balance (2800-9000 K looks), contrast and saturation per photo."""
    out = np.empty_like(thumbs)
    for i, t in enumerate(thumbs):
        lin = _to_linear(t) * 2.0 ** rng.uniform(-1.5, 1.0)
        lin = _adapt(lin, D65, _cct_xy(float(rng.uniform(4000, 9000))), "CAT02")
        enc = np.clip(colour.cctf_encoding(np.clip(lin, 0, None), function="sRGB"), 0, 1)
        c = rng.uniform(0.75, 1.15)
        enc = np.clip(0.5 + (enc - 0.5) * c, 0, 1)
        out[i] = _to_u8(_lab_chroma(colour.cctf_decoding(enc, function="sRGB"), rng.uniform(0.7, 1.2)))
    return out


def make_pairs(style: str, photos, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n (before, after) 64x64 pairs of a style from random crops of the given photos."""
    from rlcore.data import random_crops

    rng = np.random.default_rng(seed)
    befores = camera_befores(random_crops(photos, n, rng), rng)
    fn = STYLES[style]
    afters = np.stack([fn(b) for b in befores])
    return befores, afters
