"""Build a real ICC v2 RGB display profile (matrix + gamma curves) for tests.

Pillow can only create sRGB, Lab and XYZ profiles, and no RGB profile ships with the packages we use, so
the tests that check "embedded ICC profiles are converted to sRGB" write one here: Adobe RGB (1998),
whose primaries and gamma (563/256) colour-science knows, which makes colour-science the oracle.
"""

import struct

import colour
import numpy as np

D50 = (0.9642, 1.0, 0.8249)


def _s15f16(values) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _xyz_tag(xyz) -> bytes:
    return b"XYZ " + bytes(4) + _s15f16(xyz)


def _curve_tag(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def _text_tag(text: str) -> bytes:
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"


def rgb_profile(colourspace_name: str = "Adobe RGB (1998)", gamma: float = 563 / 256) -> bytes:
    """An ICC v2 'mntr' RGB profile whose colorants are the colour space's primaries adapted to D50."""
    space = colour.RGB_COLOURSPACES[colourspace_name]
    to_d50 = colour.adaptation.matrix_chromatic_adaptation_VonKries(
        colour.xy_to_XYZ(space.whitepoint),
        colour.xy_to_XYZ(colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D50"]),
        transform="Bradford",
    )
    colorants = to_d50 @ space.matrix_RGB_to_XYZ  # columns: red, green, blue in the D50 PCS
    tags = [
        (b"desc", _desc_tag(f"{colourspace_name} (test profile)")),
        (b"wtpt", _xyz_tag(D50)),
        (b"rXYZ", _xyz_tag(colorants[:, 0])),
        (b"gXYZ", _xyz_tag(colorants[:, 1])),
        (b"bXYZ", _xyz_tag(colorants[:, 2])),
        (b"rTRC", _curve_tag(gamma)),
        (b"gTRC", _curve_tag(gamma)),
        (b"bTRC", _curve_tag(gamma)),
        (b"cprt", _text_tag("No copyright, generated for tests")),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, payload in tags:
        payload += bytes(-len(payload) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(payload))
        data += payload
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)
        + struct.pack(">I", 0)
        + _s15f16(D50)
        + bytes(4)
    )
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_rgb_to_srgb(rgb_uint8: np.ndarray) -> np.ndarray:
    """colour-science's conversion of 8-bit Adobe RGB (1998) values to 8-bit sRGB (Bradford adaptation)."""
    srgb = colour.RGB_to_RGB(
        np.asarray(rgb_uint8, dtype=np.float64) / 255.0,
        "Adobe RGB (1998)",
        "sRGB",
        chromatic_adaptation_transform="Bradford",
        apply_cctf_decoding=True,
        apply_cctf_encoding=True,
    )
    return np.clip(np.round(srgb * 255.0), 0, 255)
