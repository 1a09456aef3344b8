"""End to end: the real server (live_server), a real Celery worker and the command-line client, in-process.

An editor logs in, uploads a folder of generated before/after pairs (twice: the second run skips them all),
trains for a few seconds, lists models, and gets XMP sidecars and rendered JPEGs for two new photos.
"""

import io
import json
import stat
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from personalize.accounts import create_or_get_editor
from personalize.client import main
from tests.photos import crop, encode, pair_bytes, photo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
PAIRS = 12
USERNAME, PASSWORD = "erin", "erin-password-123"


def crs_fields(path) -> dict[str, str]:
    """crs:* settings of an XMP sidecar, written as attributes or as elements."""
    fields = {}
    for element in ET.parse(path).getroot().iter():
        for key, value in element.attrib.items():
            if key.startswith(f"{{{CRS}}}"):
                fields[key[len(CRS) + 2 :]] = value
        if element.tag.startswith(f"{{{CRS}}}") and (element.text or "").strip():
            fields[element.tag[len(CRS) + 2 :]] = element.text.strip()
    return fields


@pytest.fixture
def run(capsys):
    def run(*argv) -> tuple[int, str, str]:
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_editor_goes_from_export_folders_to_sidecars(
    live_server, celery_worker_process, tmp_path, monkeypatch, run
):
    create_or_get_editor(USERNAME, password=PASSWORD)
    config = tmp_path / "config" / "personalize.json"
    monkeypatch.setenv("PERSONALIZE_CONFIG", str(config))
    monkeypatch.setenv("PERSONALIZE_SERVER", live_server.url)
    monkeypatch.delenv("PERSONALIZE_TOKEN", raising=False)

    # Export folders: originals as IMG_0000.jpg, finished exports as img_0000.JPG, one original unmatched.
    before_dir, after_dir = tmp_path / "originals", tmp_path / "exports"
    before_dir.mkdir()
    after_dir.mkdir()
    for i in range(PAIRS):
        before, after = pair_bytes(i)
        (before_dir / f"IMG_{i:04d}.jpg").write_bytes(before)
        (after_dir / f"img_{i:04d}.JPG").write_bytes(after)
    (before_dir / "IMG_9999.jpg").write_bytes(pair_bytes(50)[0])

    # login
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, _, err = run("login", "--username", USERNAME, "--password-stdin")
    assert code == 0, err
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["server"] == live_server.url.rstrip("/")

    code, _, err = run("models", "--token", "not-a-token")
    assert code == 4 and "refused the token" in err

    # upload, then upload again: everything is already there
    code, out, err = run("upload", before_dir, after_dir, "--tag", "e2e")
    assert code == 0, err
    assert out.strip() == f"uploaded {PAIRS}, skipped 0 already uploaded"
    assert "IMG_9999.jpg" in err
    code, out, err = run("upload", before_dir, after_dir, "--tag", "e2e")
    assert code == 0, err
    assert out.strip() == f"uploaded 0, skipped {PAIRS} already uploaded"

    # train and wait
    code, out, err = run("train", "--seconds", "8", "--wait")
    assert code == 0, f"{out}\n{err}\n{(tmp_path / 'worker.log').read_text(errors='replace')[-4000:]}"
    assert "succeeded: model" in out and "validation ΔE00" in out

    code, out, err = run("status", "--json")
    job = json.loads(out)
    assert code == 0 and job["status"] == "succeeded" and job["model"] is not None

    # models and activate
    code, out, err = run("models", "--json")
    models = json.loads(out)
    assert code == 0 and [m["id"] for m in models] == [job["model"]]
    code, out, err = run("models")
    assert code == 0 and str(job["model"]) in out
    code, out, err = run("activate", job["model"])
    assert code == 0 and "is now active" in out, err

    # predict on two new photos: sliders printed, XMP sidecars beside them, rendered JPEGs
    shoot = tmp_path / "new shoot"
    shoot.mkdir()
    new_photos = [shoot / "DSC_0100.jpg", shoot / "DSC_0101.png"]
    new_photos[0].write_bytes(encode(crop(photo("coffee"), 100, size=200), quality=90))
    new_photos[1].write_bytes(encode(crop(photo("astronaut"), 101, size=180), format="PNG"))
    renders = tmp_path / "renders"
    code, out, err = run("predict", *new_photos, "--xmp", "--render", renders, "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [record["image"] for record in records] == [str(path) for path in new_photos]
    for record in records:
        assert record["model"]["kind"] == "personal" and record["model"]["id"] == job["model"]
        assert len(record["adjustments"]) == 12
        assert all(
            isinstance(value, int) and -100 <= value <= 100 for value in record["adjustments"].values()
        )

    for image in new_photos:
        sidecar = image.with_suffix(".xmp")
        assert sidecar.exists(), f"no sidecar beside {image.name}"
        fields = crs_fields(sidecar)
        assert {"Exposure2012", "IncrementalTemperature"} <= fields.keys(), fields
        float(fields["Exposure2012"])
        float(fields["IncrementalTemperature"])

    rendered = sorted(renders.iterdir())
    assert [path.name for path in rendered] == ["DSC_0100.jpg", "DSC_0101.jpg"]
    for path, source in zip(rendered, new_photos, strict=True):
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.size == Image.open(source).size

    # The plain text view prints one block of sliders per photo.
    code, out, err = run("predict", *new_photos, "--strength", "0.5")
    assert code == 0, err
    assert "DSC_0100.jpg  (personal model" in out and "DSC_0101.png  (personal model" in out
