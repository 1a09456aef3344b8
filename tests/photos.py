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
    before = crop(photo(photos[index % len(photos)]), index)
    return encode(before, quality=92), encode(warm_and_bright(before), quality=92)
