"""rlcore.imageio: formats, orientation, ICC, alpha, 16-bit, metadata and full-resolution memory."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlcore import editor, imageio
from tests.photos import photo


def _jpeg(image, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def test_thumbnail_is_whole_photo_box_filtered():
    image = photo("coffee")
    thumb = imageio.thumbnail(image)
    assert thumb.shape == (64, 64, 3) and thumb.dtype == np.uint8
    assert np.abs(thumb.mean((0, 1)) - image.mean((0, 1))).max() < 1.0


def test_load_image_draft_and_max_pixels():
    data = _jpeg(photo("astronaut"))
    assert imageio.load_image(data).shape == (512, 512, 3)
    assert imageio.load_image(data, draft_size=64).shape == (64, 64, 3)
    small = imageio.load_image(data, max_pixels=10_000)
    assert small.shape[0] * small.shape[1] <= 10_000


def test_exif_orientation_applied_and_reset_on_output():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _jpeg(photo("rocket"), exif=exif.tobytes())  # 427 x 640
    assert imageio.load_image(data).shape == (640, 427, 3)
    out = io.BytesIO()
    imageio.edit_file(data, out, {"exposure": 10}, format="JPEG")
    written = Image.open(io.BytesIO(out.getvalue()))
    assert written.size == (427, 640)
    assert written.getexif()[0x0112] == 1
    assert written.info["icc_profile"] == imageio.SRGB_ICC


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_alpha_kept_through_edit(fmt):
    image = photo("coffee")[:100, :120]
    alpha = np.tile(np.linspace(0, 255, 120).astype(np.uint8), (100, 1))[..., None]
    buf = io.BytesIO()
    imageio.save_image(np.concatenate([image, alpha], 2), buf, fmt)
    out = io.BytesIO()
    imageio.edit_file(buf.getvalue(), out, {"saturation": 30}, format=fmt)
    loaded = imageio.load_full(out.getvalue()).pixels
    assert loaded.shape == (100, 120, 4)
    tolerance = 0 if fmt != "WEBP" else 8
    assert np.abs(loaded[..., 3].astype(int) - alpha[..., 0]).max() <= tolerance


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_round_trip_and_edit(fmt, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (40, 50, 3)).astype(np.uint16)
    path = tmp_path / f"x.{fmt.lower()}"
    imageio.save_image(pixels, path, fmt)
    assert np.array_equal(imageio.load_full(path).pixels, pixels)
    out = tmp_path / f"y.{fmt.lower()}"
    imageio.edit_file(path, out, {"exposure": 20})
    edited = imageio.load_full(out).pixels
    assert edited.dtype == np.uint16
    assert np.array_equal(edited, editor.apply_tiled(pixels, {"exposure": 20}))


def test_jpeg_keeps_exif():
    exif = Image.Exif()
    exif[0x010F] = "TestCamera"  # Make
    data = _jpeg(photo("chelsea"), exif=exif.tobytes())
    out = io.BytesIO()
    assert imageio.edit_file(data, out, {"contrast": 10}) == "JPEG"
    assert Image.open(io.BytesIO(out.getvalue())).getexif()[0x010F] == "TestCamera"


def test_24_megapixel_edit_under_1_5_gb(tmp_path):
    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_fullres.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--megapixels", "24"], check=True, capture_output=True, text=True
    )
    row = out.stdout.strip().splitlines()[-1].split()
    assert float(row[0]) == 24 and float(row[2]) < 1500, out.stdout


def test_sixteen_bit_greyscale_png_is_scaled_not_clipped():
    grey = photo("coffee").mean(axis=2)
    buffer = io.BytesIO()
    Image.fromarray((grey * 257).astype(np.uint16)).save(buffer, format="PNG")
    loaded = imageio.load_image(io.BytesIO(buffer.getvalue()))
    assert loaded.shape == (*grey.shape, 3) and loaded.dtype == np.uint8
    assert np.abs(loaded[..., 0].astype(float) - grey).max() <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_embedded_icc_profile_is_converted_to_srgb(fmt):
    from tests.icc import adobe_rgb_to_srgb, rgb_profile

    rng = np.random.default_rng(7)
    adobe = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    adobe[0, :8] = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [200, 40, 40], [40, 200, 40], [40, 40, 200],
                    [0, 255, 0], [230, 210, 190]]  # fmt: skip
    buffer = io.BytesIO()
    options = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(adobe).save(buffer, format=fmt, icc_profile=rgb_profile(), **options)
    expected = adobe_rgb_to_srgb(
        adobe if fmt != "JPEG" else np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    )

    loaded = imageio.load_image(io.BytesIO(buffer.getvalue())).astype(float)
    assert np.abs(loaded - expected).max() <= 2
    # the untouched values differ a lot: the conversion really happened
    assert np.abs(adobe.astype(float) - expected).max() > 30
    full = imageio.load_full(io.BytesIO(buffer.getvalue())).pixels.astype(float)
    assert np.abs(full - expected).max() <= 2
