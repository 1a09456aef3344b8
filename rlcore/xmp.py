"""Export slider values as an XMP sidecar that Adobe Camera Raw and Lightroom Classic read.

Ten sliders have a Lightroom counterpart with the same name, direction and range, and are written
as is (exposure converted to EV). The two extra ones are expressed with Lightroom's tone curves, which
is close but not identical. docs/editor.md lists what does not map exactly; in short, our curves
are our own approximations of Lightroom's, so the same numbers give a similar, not identical, look.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

from rlcore.editor import ADJUSTMENTS, EXPOSURE_STOPS, FADE_LIFT, sliders_from_dict

__all__ = ["to_xmp", "CRS_NS"]

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
CRS_NS = "http://ns.adobe.com/camera-raw-settings/1.0/"

# Ours -> crs attribute, for the sliders Lightroom has with the same meaning and -100..100 range.
_DIRECT = {
    "temperature": "IncrementalTemperature",  # for JPEG/TIFF Lightroom's Temp slider is -100..100
    "tint": "IncrementalTint",
    "contrast": "Contrast2012",
    "highlights": "Highlights2012",
    "shadows": "Shadows2012",
    "whites": "Whites2012",
    "blacks": "Blacks2012",
    "vibrance": "Vibrance",
    "saturation": "Saturation",
}


def _signed(value: int) -> str:
    return f"{value:+d}" if value else "0"


def to_xmp(adjustments: Mapping[str, int | float]) -> str:
    """{name: value} (missing = 0; ValueError as for ``rlcore.editor.apply``) -> an XMP sidecar string."""
    values = dict(zip(ADJUSTMENTS, (int(v) for v in sliders_from_dict(adjustments)), strict=True))
    for prefix, uri in (("x", X_NS), ("rdf", RDF_NS), ("crs", CRS_NS)):
        ET.register_namespace(prefix, uri)

    def crs(name: str) -> str:
        return f"{{{CRS_NS}}}{name}"

    meta = ET.Element(f"{{{X_NS}}}xmpmeta", {f"{{{X_NS}}}xmptk": "rlcore"})
    rdf = ET.SubElement(meta, f"{{{RDF_NS}}}RDF")
    desc = ET.SubElement(rdf, f"{{{RDF_NS}}}Description", {f"{{{RDF_NS}}}about": ""})
    attributes = {
        "Version": "15.0",
        "ProcessVersion": "11.0",
        "WhiteBalance": "As Shot",
        "Exposure2012": f"{values['exposure'] * EXPOSURE_STOPS / 100:+.2f}",
    }
    attributes.update({attr: _signed(values[name]) for name, attr in _DIRECT.items()})
    # Brightness is a midtone curve: Lightroom's parametric curve raises or lowers Darks and Lights.
    attributes["ParametricDarks"] = _signed(round(values["brightness"] / 2))
    attributes["ParametricLights"] = _signed(round(values["brightness"] / 2))
    attributes["ToneCurveName2012"] = "Custom" if values["fade"] else "Linear"
    attributes["HasSettings"] = "True"
    for name, value in attributes.items():
        desc.set(crs(name), value)

    # Fade is a straight line in the point curve: black lifted (+) or clipped (-) by FADE_LIFT.
    offset = round(abs(values["fade"]) / 100 * FADE_LIFT * 255)
    points = [(0, offset), (255, 255)] if values["fade"] >= 0 else [(offset, 0), (255, 255)]
    curve = ET.SubElement(desc, crs("ToneCurvePV2012"))
    seq = ET.SubElement(curve, f"{{{RDF_NS}}}Seq")
    for x, y in points:
        ET.SubElement(seq, f"{{{RDF_NS}}}li").text = f"{x}, {y}"

    ET.indent(meta)
    body = ET.tostring(meta, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>\n'
