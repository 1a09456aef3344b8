"""Turning a photo on the editor's disk into the small preview the batch endpoint predicts from.

The model only ever sees a 64x64 thumbnail of the whole photo, so the client makes that thumbnail itself
and sends it (a lossless PNG of ~10 KB) instead of the 2-25 MB file. It follows the server's own steps for
a full upload (personalize.images.UploadedPhoto.decode, then rlcore.imageio.thumbnail) exactly: JPEG
decoded in draft mode (the decoder scales by 1/2, 1/4 or 1/8, which is what makes this cheap), EXIF
orientation applied, an embedded ICC profile converted to sRGB, box-filtered to at most 256 px on the long
side, then box-filtered to 64x64. So a photo gets the same sliders through a preview as through its file;
tests/test_batch_predict.py checks the two thumbnails are identical. The steps are repeated here rather
than imported because the client must not load rlcore (and with it torch).

RAW files are not decoded: cameras embed a JPEG preview in them, and that is what is used (found by
scanning the file for JPEG streams, which works for every RAW format, TIFF-based or not). A RAW file
without one raises NoPreview, which the command line reports as skipped, not failed.

Only Pillow: this runs in the client's worker processes, one photo per call.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

PREVIEW_SIDE = 64  # the model's thumbnail; the server says which size it wants (GET predict/batch)
DECODE_SIDE = 256  # the server decodes uploads to at most this before the thumbnail: the same here
RAW_EXTENSIONS = frozenset(
    ".3fr .arw .cr2 .cr3 .crw .dcr .dng .erf .iiq .kdc .mef .mos .mrw .nef .nrw .orf .pef .raf .raw .rw2 "
    ".rwl .sr2 .srf .srw .x3f".split()
)
# A RAW file holds a few JPEG streams (a 160x120 thumbnail, a larger preview); the largest is used. Bytes
# that merely look like a JPEG's start are rare in compressed data: this bounds a pathological file.
_MAX_JPEG_CANDIDATES = 64
# Built exactly as rlcore.imageio builds it (through its ICC bytes): a profile made directly by
# createProfile rounds a few pixels differently, and the preview must match the server's decode.
_SRGB = ImageCms.ImageCmsProfile(
    io.BytesIO(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
)
_SRGB_DESCRIPTION = ImageCms.getProfileDescription(_SRGB)
# EXIF orientation -> the transpose that puts the photo upright (as ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class PreviewError(Exception):
    """The photo could not be turned into a preview (the message says why): the photo failed."""


class NoPreview(PreviewError):
    """A RAW file without an embedded JPEG preview: skipped, since only a RAW converter could read it."""


def is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_EXTENSIONS


def make_preview(path: Path, size: int = PREVIEW_SIDE) -> tuple[bytes, float]:
    """(PNG bytes of the photo's size x size thumbnail, seconds of CPU it took). Raises PreviewError.

    A top-level function of one picklable argument, so a process pool can run it.
    """
    started = time.process_time()
    try:
        image, container_orientation = _embedded_jpeg(path) if is_raw(path) else (Image.open(path), 1)
        with image:
            thumb = _thumbnail(image, size, container_orientation)
    except PreviewError:
        raise
    except Image.DecompressionBombError as exc:
        raise PreviewError(f"too many pixels to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise PreviewError("not a readable image (expected JPEG, PNG, TIFF, WebP or RAW)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise PreviewError(f"the image data is damaged or incomplete ({exc})") from exc
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", compress_level=1)  # ~10 KB either way; level 1 is 5x faster than 6
    return buffer.getvalue(), time.process_time() - started


def _thumbnail(image: Image.Image, size: int, container_orientation: int = 1) -> Image.Image:
    if image.format == "JPEG":
        image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
    own_orientation = image.getexif().get(0x0112, 1)
    upright = ImageOps.exif_transpose(image)
    if own_orientation == 1 and container_orientation in _UPRIGHT:
        upright = upright.transpose(_UPRIGHT[container_orientation])
    rgb = _to_srgb(_eight_bit(upright)).convert("RGB")
    if max(rgb.size) > DECODE_SIDE:
        scale = DECODE_SIDE / max(rgb.size)
        reduced = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(reduced, Image.Resampling.BOX)
    # Squashed to a square on purpose: the model's edits are pointwise, the thumbnail's colours are what count.
    return rgb.resize((size, size), Image.Resampling.BOX)


def _eight_bit(image: Image.Image) -> Image.Image:
    """RGB(A) at 8 bits; 16-bit greyscale is scaled (Pillow's convert() would clip it at 255)."""
    if image.mode.startswith("I") or image.mode == "F":
        grey = image.convert("I").point(lambda value: value / 257).convert("L")
        grey.info = image.info
        image = grey
    return image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if ImageCms.getProfileDescription(source) == _SRGB_DESCRIPTION:
        return image
    return ImageCms.profileToProfile(image, source, _SRGB, outputMode=image.mode)


def _embedded_jpeg(path: Path) -> tuple[Image.Image, int]:
    """(the largest JPEG stream inside a RAW file, opened; the RAW's EXIF orientation). Raises NoPreview."""
    data = path.read_bytes()
    best, best_pixels = None, 0
    start = data.find(b"\xff\xd8\xff")
    for _ in range(_MAX_JPEG_CANDIDATES):
        if start < 0:
            break
        try:
            candidate = Image.open(io.BytesIO(data[start:]))
            if candidate.format == "JPEG" and candidate.width * candidate.height > best_pixels:
                best, best_pixels = candidate, candidate.width * candidate.height
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            pass  # three bytes that only look like a JPEG's start
        start = data.find(b"\xff\xd8\xff", start + 3)
    if best is None:
        raise NoPreview("a RAW file without an embedded JPEG preview (convert it to JPEG or TIFF first)")
    # Previews rarely carry their own orientation: the RAW's TIFF header does (Pillow reads TIFF-based
    # RAW containers; for others the preview's own EXIF, if any, is all there is).
    return best, _container_orientation(data)


def _container_orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as container:
            return int(container.getexif().get(0x0112, 1))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError):
        return 1
