"""Test photos: real photos that ship inside installed packages, and edits of them, as encoded bytes."""

import io
from functools import cache

import numpy as np
from PIL import Image


@cache
def photo(name: str) -> np.ndarray:
    """uint8 HxWx3 sRGB: skimage's astronaut/chelsea/coffee/rocket, sklearn's china/flower, grace_hopper."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = dict(zip(("china", "flower"), load_sample_images().images, strict=True))
        return np.ascontiguousarray(images[name])
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def crop(image: np.ndarray, index: int, size: int = 160) -> np.ndarray:
    """A deterministic crop, so many distinct pairs come out of a few photos."""
    rng = np.random.default_rng(index)
    y = rng.integers(0, image.shape[0] - size)
    x = rng.integers(0, image.shape[1] - size)
    return image[y : y + size, x : x + size]


def warm_and_bright(image: np.ndarray) -> np.ndarray:
    """A simple 'expert' edit: brighter and warmer."""
    out = image.astype(np.float32) * np.array([1.18, 1.08, 0.92]) + 12
    return np.clip(out, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, format: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, **options)
    return buffer.getvalue()


def pair_bytes(
    index: int, photos=("astronaut", "chelsea", "coffee", "china", "flower", "rocket")
) -> tuple[bytes, bytes]:
    image = photo(photos[index % len(photos)])
    before = crop(image, index)
    # A crop of clear sky becomes one flat colour once brightened, and the service refuses a blank after:
    # take another crop of the same photo.
    retry = 0
    while before.mean(axis=2).std() < 6:
        retry += 1
        before = crop(image, index + 100_000 * retry)
    return encode(before, quality=92), encode(warm_and_bright(before), quality=92)


def flat_png(width: int, height: int, rgb: tuple[int, int, int] = (128, 64, 32)) -> bytes:
    """An 8-bit RGB PNG of one colour, built by hand: 13000x13000 is ~0.5 MB here but 507 MB decoded.

    Pillow would need the decoded image in memory to write it. Instead, a band of rows is deflated once,
    ending in a full flush (which resets the compressor, so the band's bytes do not depend on what came
    before) and the band repeated; the zlib checksum over the whole raw data is computed alongside.
    """
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    band_rows = 100
    band = (b"\x00" + bytes(rgb) * width) * band_rows  # each row: filter type 0, then the pixels
    compressor = zlib.compressobj(9)
    deflated = compressor.compress(band) + compressor.flush(zlib.Z_FULL_FLUSH)
    header, block = deflated[:2], deflated[2:]  # the 2-byte zlib header only once
    bands, rest = divmod(height, band_rows)
    checksum = 1
    for _ in range(bands):
        checksum = zlib.adler32(band, checksum)
    tail = zlib.compressobj(9, wbits=-15)  # raw deflate: the last rows and the final block
    last_rows = band[: rest * len(band) // band_rows]
    checksum = zlib.adler32(last_rows, checksum)
    stream = header + block * bands + tail.compress(last_rows) + tail.flush() + struct.pack(">I", checksum)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
