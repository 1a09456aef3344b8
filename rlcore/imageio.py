"""Reading, writing and editing real photo files: JPEG, PNG (8 and 16 bit), TIFF and WebP.

Every loader applies the EXIF orientation and converts an embedded ICC profile to sRGB, because the
editor and the reward assume sRGB pixels the right way up. Two ways in:

* ``load_image``: what prediction and training use, a uint8 HxWx3 sRGB array (alpha dropped),
  optionally decoded small (JPEG draft mode) or capped in pixel count;
* ``edit_file``: the full-resolution edit the service renders for an upload. It keeps alpha and 16-bit
  depth, edits in strips (``rlcore.editor.apply_tiled``) so a 24-megapixel photo stays well under
  1.5 GB, and writes JPEG with the EXIF block and an embedded sRGB profile.

Pixels are decoded by Pillow, except 16-bit PNG and TIFF, which Pillow can only open as 8-bit RGB:
those are decoded by OpenCV, with Pillow still reading their metadata.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps

from rlcore.editor import apply_tiled

__all__ = [
    "THUMB_SIZE",
    "thumbnail",
    "load_image",
    "load_full",
    "save_image",
    "edit_file",
    "fit_within",
    "SRGB_ICC",
]

THUMB_SIZE = 64
SRGB_ICC: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
_SRGB_PROFILE = ImageCms.ImageCmsProfile(io.BytesIO(SRGB_ICC))
_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP"}

Source = str | os.PathLike | BinaryIO | bytes


def thumbnail(image: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """The whole photo resized to uint8 (size, size, 3) with a box (area-average) filter.

    The aspect ratio is not kept: the edits are pointwise, so a squashed thumbnail has the same colours.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"thumbnail expects a uint8 HxWx3 array, got {image.dtype} {image.shape}")
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))


def _read_bytes(src: Source) -> bytes:
    if isinstance(src, bytes):
        return src
    if isinstance(src, str | os.PathLike):
        with open(src, "rb") as f:
            return f.read()
    return src.read()


def _open(src: Source) -> Image.Image:
    if isinstance(src, bytes):
        src = io.BytesIO(src)
    return Image.open(src)


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert an embedded ICC profile to sRGB (8-bit modes only; Pillow's ImageCms has no 16-bit RGB)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im
    mode = "RGBA" if "A" in im.getbands() else "RGB"
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert(mode)
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if source.profile.profile_description == _SRGB_PROFILE.profile.profile_description:
        return im
    return ImageCms.profileToProfile(im, source, _SRGB_PROFILE, outputMode=mode)


def _rgb_or_rgba(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I") or im.mode == "F":
        # 16-bit greyscale opens as I;16 or I (32-bit int): Pillow's convert() would clip it at 255.
        grey = Image.fromarray(
            (np.asarray(im, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
        )
        grey.info = im.info
        im = grey
    return im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")


def load_image(src: Source, max_pixels: int | None = None, draft_size: int | None = None) -> np.ndarray:
    """A photo file as uint8 HxWx3 sRGB, the right way up, alpha dropped.

    draft_size: for JPEG, let the decoder scale down by 1/2, 1/4 or 1/8 as long as both sides stay at
    least this large (much faster than decoding full size and resizing). max_pixels: if the result has
    more pixels than this, it is box-filtered down to at most that many, aspect kept.
    """
    with _open(src) as im:
        if draft_size is not None and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        im = ImageOps.exif_transpose(im)
        im = _to_srgb(_rgb_or_rgba(im)).convert("RGB")
        if max_pixels is not None and im.width * im.height > max_pixels:
            scale = (max_pixels / (im.width * im.height)) ** 0.5
            size = (max(1, int(im.width * scale)), max(1, int(im.height * scale)))
            im = im.resize(size, Image.Resampling.BOX)
        return np.asarray(im)


@dataclass
class Loaded:
    """A full-resolution image: pixels (uint8 or uint16, HxWx3 or HxWx4, sRGB, upright) and metadata."""

    pixels: np.ndarray
    format: str
    exif: bytes | None = None
    info: dict = field(default_factory=dict)


def _is_16_bit(im: Image.Image) -> bool:
    args = im.tile[0].args if im.tile else None
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode and im.mode in ("RGB", "RGBA")


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxWxC array, as ImageOps.exif_transpose does to images."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.rot90(a[:, ::-1], 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a[:, ::-1], -1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](pixels)) if orientation in ops else pixels


def load_full(src: Source) -> Loaded:
    """Decode a photo at full resolution for editing: keeps alpha, keeps 16-bit PNG/TIFF at 16 bit."""
    # The compressed bytes are small next to the pixels; keeping them lets OpenCV decode them too.
    data = _read_bytes(src)
    with _open(data) as im:
        fmt = im.format
        # Before getexif(), which may decode the image (PNG) and so forget the tile's raw mode.
        sixteen_bit = _is_16_bit(im) and not im.info.get("icc_profile")
        exif = im.info.get("exif")
        orientation = im.getexif().get(0x0112, 1)
        if sixteen_bit:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            # OpenCV orders channels BGR(A).
            order = [2, 1, 0, 3] if decoded.shape[2] == 4 else [2, 1, 0]
            pixels = _orient(decoded[:, :, order], orientation)
        else:
            # 16-bit files with a non-sRGB profile land here too: converted at 8 bits (see docs/editor.md).
            # Every Pillow step below may copy the whole photo, so each is skipped when not needed
            # and the previous image released: a 24-megapixel photo is 72 MB per copy.
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            wanted = "RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB"
            if im.mode != wanted:
                im = im.convert(wanted)
            im = _to_srgb(im)
            pixels = np.asarray(im)
            del im
    return Loaded(pixels=pixels, format=fmt, exif=exif)


def _exif_upright(exif: bytes | None) -> bytes | None:
    """The EXIF block with Orientation reset to 1, since the pixels we write are already upright."""
    if not exif:
        return None
    parsed = Image.Exif()
    parsed.load(exif)
    if 0x0112 in parsed:
        parsed[0x0112] = 1
    return parsed.tobytes()


def save_image(
    pixels: np.ndarray,
    dst: str | os.PathLike | BinaryIO,
    format: str,
    quality: int = 92,
    exif: bytes | None = None,
) -> None:
    """Write uint8/uint16 HxWx3 or HxWx4 sRGB pixels as JPEG, PNG, TIFF or WEBP (``format``).

    JPEG and WebP have no 16-bit or (JPEG) alpha: 16-bit is reduced to 8, alpha dropped for JPEG.
    JPEG, PNG and WebP embed the sRGB ICC profile; JPEG and WebP keep ``exif`` (Orientation set to 1).
    16-bit PNG and TIFF are encoded by OpenCV, which writes no ICC profile (their pixels are sRGB).
    """
    fmt = format.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in ("JPEG", "PNG", "TIFF", "WEBP"):
        raise ValueError(f"unsupported output format {format!r}")
    if pixels.dtype == np.uint16 and fmt in ("PNG", "TIFF"):
        channels = [2, 1, 0, 3] if pixels.shape[2] == 4 else [2, 1, 0]
        ok, encoded = cv2.imencode("." + fmt.lower(), np.ascontiguousarray(pixels[:, :, channels]))
        if not ok:
            raise OSError(f"OpenCV could not encode a 16-bit {fmt}")
        _write(dst, encoded.tobytes())
        return
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if fmt == "JPEG" and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    im = Image.fromarray(np.ascontiguousarray(pixels))
    options: dict = {"icc_profile": SRGB_ICC}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
        upright = _exif_upright(exif)
        if upright:
            options["exif"] = upright
    if fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    im.save(dst, format=fmt, **options)


def _write(dst: str | os.PathLike | BinaryIO, data: bytes) -> None:
    if isinstance(dst, str | os.PathLike):
        with open(dst, "wb") as f:
            f.write(data)
    else:
        dst.write(data)


def fit_within(pixels: np.ndarray, max_size: int) -> np.ndarray:
    """Box-filter so the longest side is at most max_size (edits are pointwise, so before or after
    editing gives the same colours; before is cheaper)."""
    h, w = pixels.shape[:2]
    if max(h, w) <= max_size:
        return pixels
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def edit_file(
    src: Source,
    dst: str | os.PathLike | BinaryIO,
    adjustments: Mapping[str, int | float],
    max_size: int | None = None,
    quality: int = 92,
    format: str | None = None,
) -> str:
    """Decode, edit at full resolution (or at most ``max_size`` on the long side) and encode a photo.

    ``format`` defaults to the destination's extension, else the source's format. Returns the format
    written ("JPEG", "PNG", "TIFF" or "WEBP").
    """
    loaded = load_full(src)
    if format is None and isinstance(dst, str | os.PathLike):
        format = _FORMATS.get(os.fspath(dst).rsplit(".", 1)[-1].lower())
    fmt = (format or loaded.format or "JPEG").upper()
    pixels = loaded.pixels if max_size is None else fit_within(loaded.pixels, max_size)
    del loaded.pixels
    edited = apply_tiled(pixels, adjustments)
    del pixels
    save_image(edited, dst, fmt, quality=quality, exif=loaded.exif)
    return "JPEG" if fmt == "JPG" else fmt
