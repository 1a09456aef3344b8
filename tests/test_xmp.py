"""rlcore.xmp: the sidecar parses with a real XML parser and carries the sliders."""

import xml.etree.ElementTree as ET

import pytest

from rlcore.xmp import CRS_NS, to_xmp

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def _description(xmp: str) -> ET.Element:
    body = xmp[xmp.index("<x:xmpmeta") : xmp.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    return ET.fromstring(body).find(f"{RDF}RDF/{RDF}Description")


def test_sliders_map_to_crs_attributes():
    adjustments = {
        "exposure": 50,
        "contrast": -20,
        "highlights": -80,
        "shadows": 35,
        "whites": 5,
        "blacks": -7,
        "temperature": 12,
        "tint": -3,
        "vibrance": 40,
        "saturation": -100,
        "brightness": 30,
        "fade": 50,
    }
    d = _description(to_xmp(adjustments))
    a = {k.replace("{" + CRS_NS + "}", ""): v for k, v in d.attrib.items()}
    assert a["ProcessVersion"] == "11.0" and a["HasSettings"] == "True"
    assert a["Exposure2012"] == "+1.00"
    assert (a["Contrast2012"], a["Highlights2012"], a["Shadows2012"]) == ("-20", "-80", "+35")
    assert (a["Whites2012"], a["Blacks2012"], a["Vibrance"], a["Saturation"]) == ("+5", "-7", "+40", "-100")
    assert (a["IncrementalTemperature"], a["IncrementalTint"]) == ("+12", "-3")
    assert a["ParametricDarks"] == a["ParametricLights"] == "+15"
    points = [li.text for li in d.find(f"{{{CRS_NS}}}ToneCurvePV2012/{RDF}Seq")]
    assert points == ["0, 26", "255, 255"]


def test_defaults_and_errors():
    a = _description(to_xmp({})).attrib
    assert a[f"{{{CRS_NS}}}Exposure2012"] == "+0.00" and a[f"{{{CRS_NS}}}Contrast2012"] == "0"
    with pytest.raises(ValueError, match="glow"):
        to_xmp({"glow": 1})
    with pytest.raises(ValueError, match="exposure"):
        to_xmp({"exposure": 300})
