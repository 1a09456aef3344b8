"""Colour science for the reward: sRGB -> linear -> XYZ (D65) -> CIELAB, and CIEDE2000.

Everything works on torch tensors whose last dimension holds the three channels, in float32 or
float64, on any device. The conversions follow colour-science (our test oracle) exactly:

* sRGB decoding is the IEC 61966-2-1 piecewise curve; a uint8 input is decoded with a 256-entry table.
* The RGB -> XYZ matrix is the one printed in IEC 61966-2-1 (4-digit coefficients), which is what
  ``colour.RGB_COLOURSPACE_sRGB`` uses. A matrix derived from the primaries differs from it near grey
  by up to 3 dE00 per pixel, so mixing the two would make our reward disagree with the oracle.
* The Lab reference white is CIE 1931 2 degree D65 given as xy = (0.3127, 0.3290), as in
  ``colour.XYZ_to_Lab``; Lab is on the usual 0-100 scale (``colour.convert(..., "CIE Lab")`` divides
  it by 100).
* ``delta_e_2000`` is Sharma, Wu and Dalal (2005) with kL = kC = kH = 1, including their conventions
  for achromatic colours (hue 0 when a' = b = 0, no hue difference when either chroma is 0).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SRGB_TO_XYZ",
    "D65_WHITE_XYZ",
    "srgb_to_linear",
    "linear_to_srgb",
    "linear_to_xyz",
    "xyz_to_lab",
    "srgb_to_lab",
    "delta_e_2000",
]

# IEC 61966-2-1, rows X, Y, Z; columns R, G, B (linear).
SRGB_TO_XYZ = (
    (0.4124, 0.3576, 0.1805),
    (0.2126, 0.7152, 0.0722),
    (0.0193, 0.1192, 0.9505),
)

_D65_XY = (0.3127, 0.3290)
# xy chromaticity -> XYZ with Y = 1.
D65_WHITE_XYZ = (_D65_XY[0] / _D65_XY[1], 1.0, (1.0 - _D65_XY[0] - _D65_XY[1]) / _D65_XY[1])

# CIE 1976 lightness constants in their exact rational form (as colour-science uses them).
_LAB_EPSILON = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0


def _decode_float(v: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve on floats in [0, 1] (values outside are extended, not clipped)."""
    return torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_LUT_CACHE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _srgb_lut(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 256-entry uint8 -> linear table, computed in float64 once per dtype and device."""
    key = (dtype, device)
    lut = _LUT_CACHE.get(key)
    if lut is None:
        codes = torch.arange(256, dtype=torch.float64) / 255.0
        lut = _decode_float(codes).to(dtype=dtype, device=device)
        _LUT_CACHE[key] = lut
    return lut


def srgb_to_linear(srgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """sRGB-encoded values -> linear light.

    uint8 input (0-255) is decoded through a 256-entry table and returned as ``dtype``; float input is
    taken as 0-1 and decoded with the piecewise formula in its own dtype (``dtype`` is then ignored).
    """
    if srgb.dtype == torch.uint8:
        return _srgb_lut(dtype, srgb.device)[srgb.long()]
    if not srgb.is_floating_point():
        raise TypeError(f"srgb_to_linear expects uint8 or a float tensor, got {srgb.dtype}")
    return _decode_float(srgb)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light (float) -> sRGB-encoded floats; values above 1 follow the same power curve."""
    v = linear.clamp_min(0.0)
    return torch.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1.0 / 2.4) - 0.055)


def linear_to_xyz(linear: torch.Tensor) -> torch.Tensor:
    """Linear sRGB (..., 3) -> CIE XYZ (..., 3) with Y = 1 for white."""
    m = torch.tensor(SRGB_TO_XYZ, dtype=linear.dtype, device=linear.device)
    return linear @ m.T


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    # Cube root above epsilon, the CIE linear segment below it (keeps L* finite slope at black).
    return torch.where(
        t > _LAB_EPSILON, t.clamp_min(_LAB_EPSILON) ** (1.0 / 3.0), (_LAB_KAPPA * t + 16.0) / 116.0
    )


def xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ (..., 3), Y = 1 for white -> CIELAB (..., 3), L* in 0-100, D65 reference white."""
    white = torch.tensor(D65_WHITE_XYZ, dtype=xyz.dtype, device=xyz.device)
    f = _lab_f(xyz / white)
    fx, fy, fz = f.unbind(-1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-1)


def srgb_to_lab(srgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """sRGB (..., 3), uint8 0-255 or float 0-1 -> CIELAB (..., 3). See ``srgb_to_linear`` for dtype."""
    return xyz_to_lab(linear_to_xyz(srgb_to_linear(srgb, dtype)))


def delta_e_2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference between Lab tensors of shape (..., 3), elementwise; returns (...).

    Works in the inputs' dtype (float32 or float64). Broadcasts like any elementwise op.
    """
    return delta_e_2000_planes(*lab1.unbind(-1), *lab2.unbind(-1))


_25_POW_7 = 25.0**7


def delta_e_2000_planes(
    L1: torch.Tensor, a1: torch.Tensor, b1: torch.Tensor, L2: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor:
    """CIEDE2000 on separate L, a, b tensors (the layout the reward's hot path keeps them in).

    Angles are in radians throughout; the formula is otherwise term by term Sharma et al. (2005).
    """
    c1 = torch.hypot(a1, b1)
    c2 = torch.hypot(a2, b2)
    c_mean = (c1 + c2) * 0.5
    c7 = c_mean**7
    g = 0.5 * (1.0 - torch.sqrt(c7 / (c7 + _25_POW_7)))
    a1p = (1.0 + g) * a1
    a2p = (1.0 + g) * a2
    c1p = torch.hypot(a1p, b1)
    c2p = torch.hypot(a2p, b2)

    two_pi = 2.0 * math.pi
    # Achromatic colours get hue 0 by convention (atan2(0, -0) would otherwise give pi).
    h1p = torch.where((a1p == 0) & (b1 == 0), 0.0, torch.remainder(torch.atan2(b1, a1p), two_pi))
    h2p = torch.where((a2p == 0) & (b2 == 0), 0.0, torch.remainder(torch.atan2(b2, a2p), two_pi))

    dLp = L2 - L1
    dCp = c2p - c1p
    cc = c1p * c2p
    chromatic = cc != 0
    dh = h2p - h1p
    # Hue difference the short way round the circle; none when either colour is achromatic.
    dh = torch.where(dh > math.pi, dh - two_pi, torch.where(dh < -math.pi, dh + two_pi, dh))
    dh = torch.where(chromatic, dh, 0.0)
    dHp = 2.0 * torch.sqrt(cc) * torch.sin(dh * 0.5)

    L_mean = (L1 + L2) * 0.5
    cp_mean = (c1p + c2p) * 0.5
    h_sum = h1p + h2p
    # Mean hue, also the short way round; the plain sum when either colour is achromatic.
    far = torch.abs(h1p - h2p) > math.pi
    h_mean = torch.where(far, torch.where(h_sum < two_pi, h_sum + two_pi, h_sum - two_pi), h_sum) * 0.5
    h_mean = torch.where(chromatic, h_mean, h_sum)

    t = (
        1.0
        - 0.17 * torch.cos(h_mean - math.radians(30.0))
        + 0.24 * torch.cos(2.0 * h_mean)
        + 0.32 * torch.cos(3.0 * h_mean + math.radians(6.0))
        - 0.20 * torch.cos(4.0 * h_mean - math.radians(63.0))
    )
    d_theta = math.radians(30.0) * torch.exp(-(((h_mean - math.radians(275.0)) / math.radians(25.0)) ** 2))
    cp7 = cp_mean**7
    r_c = 2.0 * torch.sqrt(cp7 / (cp7 + _25_POW_7))
    l50 = (L_mean - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / torch.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * cp_mean
    s_h = 1.0 + 0.015 * cp_mean * t
    r_t = -torch.sin(2.0 * d_theta) * r_c

    tl = dLp / s_l
    tc = dCp / s_c
    th = dHp / s_h
    return torch.sqrt(tl * tl + tc * tc + th * th + r_t * tc * th)
