"""Checking and decoding uploaded photos before anything is stored.

Every check raises UploadError(field, reason); the API turns it into a 400 naming the field. The header is
read first (format, dimensions) so that decompression bombs are refused before any pixel is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from rlcore.imageio import THUMB_SIZE, load_image, thumbnail

ACCEPTED_FORMATS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "WEBP": "webp"}
MIN_PAIR_SIDE = THUMB_SIZE
# EXIF orientations 5..8 swap width and height.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


class UploadError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class UploadedPhoto:
    field: str
    data: bytes
    format: str
    width: int  # after EXIF orientation
    height: int
    filename: str = ""  # as uploaded (or the zip entry's name), for messages

    @property
    def label(self) -> str:
        """ "after 'IMG_1.jpg'", or 'after' when the file had no name."""
        return f"{self.field} '{self.filename}'" if self.filename else self.field

    @property
    def extension(self) -> str:
        return ACCEPTED_FORMATS[self.format]

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def decode(self, max_side: int | None = None) -> np.ndarray:
        """Decode to sRGB uint8 HxWx3 (EXIF orientation applied, ICC converted, alpha dropped).

        With max_side, JPEGs decode at reduced size (Pillow's draft mode), which is what makes prediction on
        a 12-megapixel upload fast; the result is then at most max_side on its longest side.
        """
        try:
            image = load_image(io.BytesIO(self.data), draft_size=max_side)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise UploadError(self.field, f"the image data is damaged or incomplete ({exc})") from exc
        if max_side and max(image.shape[:2]) > max_side:
            scale = max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
        return image


def read_upload(field: str, uploaded) -> UploadedPhoto:
    """Read an uploaded file's bytes and header; refuse what is empty, too big, not a photo, or a bomb."""
    if uploaded is None:
        raise UploadError(field, "this file is required")
    size = getattr(uploaded, "size", None)
    if size == 0:
        raise UploadError(field, "the file is empty")
    if size is not None and size > settings.MAX_UPLOAD_BYTES:
        raise UploadError(field, f"the file is {size} bytes; the limit is {settings.MAX_UPLOAD_BYTES} bytes")
    data = uploaded.read()
    if not data:
        raise UploadError(field, "the file is empty")
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise UploadError(field, f"the file is larger than the limit of {settings.MAX_UPLOAD_BYTES} bytes")
    return inspect_bytes(field, data, filename=getattr(uploaded, "name", "") or "")


def inspect_bytes(field: str, data: bytes, filename: str = "") -> UploadedPhoto:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            width, height = image.size
            if image_format not in ACCEPTED_FORMATS:
                raise UploadError(
                    field, f"{image_format} images are not accepted (expected JPEG, PNG, TIFF or WebP)"
                )
            # Before anything that may decode: the pixel count comes from the header alone.
            pixels = width * height
            if pixels > settings.MAX_IMAGE_PIXELS:
                raise UploadError(
                    field,
                    f"the image is {width}x{height} = {pixels / 1e6:.1f} megapixels; "
                    f"the limit is {settings.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels",
                )
            orientation = _header_orientation(image)
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:
        raise UploadError(field, f"the image has too many pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(field, "not a readable image (expected JPEG, PNG, TIFF or WebP)") from exc
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return UploadedPhoto(
        field=field,
        data=data,
        format=image_format,
        width=width,
        height=height,
        filename=filename.split("/")[-1],
    )


def _header_orientation(image: Image.Image) -> int:
    """The EXIF orientation, read without decoding any pixel.

    JPEG, TIFF and WebP keep EXIF in their header. PNG's own getexif() decodes the whole image first, in
    case an eXIf chunk follows the pixel data (which the PNG specification does not allow): a small PNG
    of one colour would be decompressed to gigabytes here. The base method reads only the eXIf and XMP
    chunks that precede the pixels, which Pillow has already parsed.
    """
    return Image.Image.getexif(image).get(0x0112, 1)


def check_min_size(photo: UploadedPhoto) -> None:
    """A pair's photos become 64x64 thumbnails for training: anything smaller would be stretched up."""
    if min(photo.width, photo.height) < MIN_PAIR_SIDE:
        raise UploadError(
            photo.field,
            f"the image is {photo.width}x{photo.height}; its shorter side must be at least {MIN_PAIR_SIDE} pixels",
        )


def decode_mask(field: str, uploaded, size: tuple[int, int]) -> tuple[np.ndarray, bytes]:
    """A client's priority mask: any image, read as greyscale, resized to `size`.

    Returns (0..1 float32 mask, the uploaded bytes)."""
    photo = read_upload(field, uploaded)
    try:
        with Image.open(io.BytesIO(photo.data)) as image:
            grey = ImageOps.exif_transpose(image).convert("L").resize(size, Image.Resampling.BOX)
    except (OSError, ValueError) as exc:
        raise UploadError(field, f"the image data is damaged or incomplete ({exc})") from exc
    return np.asarray(grey, dtype=np.float32) / 255.0, photo.data


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --- previews (POST /api/v1/predict/batch) ----------------------------------------------------------------

# A preview is what a client decoded itself: the model's 64x64 thumbnail, or a small JPEG of at most this
# many pixels on its long side. Anything bigger is a photo, which /api/v1/predict takes as it is.
PREVIEW_MAX_SIDE = 256
PREVIEW_MAX_BYTES = 512 * 1024
PREVIEW_FORMATS = {"JPEG", "PNG", "WEBP"}


def read_preview(uploaded) -> np.ndarray:
    """One preview of a batch -> the model's uint8 (64, 64, 3) thumbnail; UploadError names what is wrong.

    A preview already at the thumbnail's size (what personalize-client sends, as PNG) is decoded and used
    as it is: no resampling, and at 64x64 the decode costs microseconds. A larger one (at most
    PREVIEW_MAX_SIDE) is decoded and box-filtered down like any photo. The size is read from the header
    first, so a full photo sent by mistake is refused before any pixel is decoded.
    """
    field = "preview"
    data = uploaded.read(PREVIEW_MAX_BYTES + 1)
    if not data:
        raise UploadError(field, "the file is empty")
    if len(data) > PREVIEW_MAX_BYTES:
        raise UploadError(field, f"larger than {PREVIEW_MAX_BYTES // 1024} KB: send a small preview")
    try:
        with Image.open(io.BytesIO(data)) as header:
            image_format, (width, height) = header.format, header.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(field, "not a readable image (expected JPEG, PNG or WebP)") from exc
    if image_format not in PREVIEW_FORMATS:
        raise UploadError(field, f"{image_format} previews are not accepted (expected JPEG, PNG or WebP)")
    if max(width, height) > PREVIEW_MAX_SIDE:
        raise UploadError(
            field,
            f"the image is {width}x{height}; a preview is at most {PREVIEW_MAX_SIDE} px on its long side "
            "(send whole photos to /api/v1/predict)",
        )
    try:
        image = load_image(data)
    except (OSError, ValueError, SyntaxError) as exc:
        raise UploadError(field, f"the image data is damaged or incomplete ({exc})") from exc
    return image if image.shape[:2] == (THUMB_SIZE, THUMB_SIZE) else thumbnail(image)
