"""Data for the agent: before/after pair sets, pairs directories and offline sample photos.

A pairs directory holds ``before/NAME.ext`` and ``after/NAME.ext`` with the same NAME (and optionally
``masks/NAME.png``: white = face / important region).  Everything is reduced to 64x64 thumbnails, the
agent's state; edits are pointwise and global so a squashed thumbnail keeps the photo's colours.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlcore import imageio
from rlcore.imageio import THUMB_SIZE

# The photo files the service accepts (JPEG, PNG, TIFF, WebP), by suffix in any case. The service and its
# client declare the same set in personalize.client.conventions (rlcore imports nothing of ours, and the
# client installs without rlcore); tests/test_conventions.py keeps the two equal.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"})


class DataError(ValueError):
    """A pairs directory or image folder that cannot be used (the message says why)."""


@dataclass
class PairSet:
    """Before/after thumbnails of one editor's pairs.

    before, after: uint8 (N, 64, 64, 3), the same place pixel for pixel (for a cropped after, the
    before's region it shows); weights: float32 (N, 64, 64) per-pixel reward weights or None (uniform);
    names: optional labels (file stems) for reports; view: uint8 (N, 64, 64, 3), the whole before photo
    as the model sees a photo it is asked about, where it differs from `before` (a cropped after), or None
    (the same as before). The editor chose the edit looking at the whole photo: the model's state is the
    view, the reward compares the before's region with the after.
    """

    before: np.ndarray
    after: np.ndarray
    weights: np.ndarray | None = None
    names: list[str] | None = field(default=None)
    view: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.before = np.ascontiguousarray(self.before, dtype=np.uint8)
        self.after = np.ascontiguousarray(self.after, dtype=np.uint8)
        if self.before.ndim != 4 or self.before.shape[-1] != 3:
            raise DataError(f"before must be (N, H, W, 3) uint8, got shape {self.before.shape}")
        if self.after.shape != self.before.shape:
            raise DataError(f"after shape {self.after.shape} differs from before shape {self.before.shape}")
        if self.weights is not None:
            self.weights = np.ascontiguousarray(self.weights, dtype=np.float32)
            if self.weights.shape != self.before.shape[:3]:
                raise DataError(
                    f"weights must be (N, H, W) = {self.before.shape[:3]}, got {self.weights.shape}"
                )
        if self.names is not None and len(self.names) != len(self.before):
            raise DataError("names must have one entry per pair")
        if self.view is not None:
            self.view = np.ascontiguousarray(self.view, dtype=np.uint8)
            if self.view.shape != self.before.shape:
                raise DataError(f"view shape {self.view.shape} differs from before shape {self.before.shape}")

    @property
    def views(self) -> np.ndarray:
        """What the model sees of each before: the whole photo (view), or the before itself."""
        return self.before if self.view is None else self.view

    def __len__(self) -> int:
        return len(self.before)

    def subset(self, idx: np.ndarray | list[int]) -> PairSet:
        idx = np.asarray(idx, dtype=np.int64)
        return PairSet(
            before=self.before[idx],
            after=self.after[idx],
            weights=None if self.weights is None else self.weights[idx],
            names=None if self.names is None else [self.names[i] for i in idx],
            view=None if self.view is None else self.view[idx],
        )


def _image_files(folder: Path) -> dict[str, Path]:
    """{stem: path} of a folder's photos. Befores and afters match by stem case-insensitively, as the
    service and its client match them (IMG_1.JPG with img_1.tif); the key keeps the first file's spelling."""
    files: dict[str, Path] = {}
    if not folder.is_dir():
        return files
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            files.setdefault(p.stem.lower(), p)
    return files


def _resize_weights(w: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(w, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)


def load_pairs_dir(
    directory: str | Path,
    face_weight: float = 0.0,
    size: int = THUMB_SIZE,
    warn: Callable[[str], None] | None = None,
    align: bool = True,
) -> PairSet:
    """Reads a pairs directory into a PairSet of thumbnails.

    Unmatched or unreadable files are reported through ``warn`` (default: a line on stderr) and skipped.
    With ``align`` (the default) each after is placed in its before (rlcore.align: crops, straightening,
    export sizes) and the before's thumbnail is cut from the region the after shows; pairs whose after
    needed it are reported ("aligned pair NAME: cropped 18 %, rotated 1.2°"), and pairs whose after is not
    the same photo, is mirrored, blank or too small a crop are reported and skipped. With
    ``face_weight > 0`` pairs get per-pixel weights: masks/NAME.png (drawn over the before) where given,
    detected faces otherwise. Raises DataError when fewer than 2 usable pairs remain.
    """
    from rlcore.align import NotAligned, identity, warp_before
    from rlcore.align import align as align_pair

    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"pairs directory not found: {root}")
    befores, afters = _image_files(root / "before"), _image_files(root / "after")
    masks = _image_files(root / "masks")
    if not (root / "before").is_dir() or not (root / "after").is_dir():
        raise DataError(f"{root} must contain before/ and after/ folders")
    for name in sorted(set(befores) - set(afters)):
        warn(f"skipped {befores[name]}: no matching after/{name}.*")
    for name in sorted(set(afters) - set(befores)):
        warn(f"skipped {afters[name]}: no matching before/{name}.*")

    b_list, a_list, w_list, v_list, names = [], [], [], [], []
    any_aligned = False
    for name in sorted(set(befores) & set(afters)):
        try:
            before = imageio.load_image(befores[name])
            after = imageio.load_image(afters[name])
        except Exception as exc:  # unreadable / corrupt file
            warn(f"skipped pair {name}: unreadable image ({type(exc).__name__}: {exc})")
            continue
        before_size, after_size = before.shape[1::-1], after.shape[1::-1]
        if align:
            try:
                alignment = align_pair(before, after)
            except NotAligned as exc:
                warn(f"refused pair {name}: {exc.reason}")
                continue
            if not alignment.is_identity:
                warn(f"aligned pair {name}: {alignment.describe()}")
        else:
            alignment = identity(before_size, after_size)
        # The before's region the after shows, in the after's frame: the same place, pixel for pixel.
        region = warp_before(before, alignment)
        weights = None
        if face_weight > 0:
            try:
                weights = _pair_weights(region, masks.get(name), face_weight, size, alignment)
            except Exception as exc:
                warn(f"pair {name}: face weighting failed ({exc}); using uniform weights")
                weights = np.ones((size, size), np.float32)
        b_list.append(imageio.thumbnail(region, size=size))
        v_list.append(b_list[-1] if alignment.is_identity else imageio.thumbnail(before, size=size))
        any_aligned = any_aligned or not alignment.is_identity
        a_list.append(imageio.thumbnail(after, size=size))
        w_list.append(weights)
        names.append(befores[name].stem)
    if len(names) < 2:
        raise DataError(f"{root}: need at least 2 usable before/after pairs, found {len(names)}")
    weights_arr = np.stack(w_list).astype(np.float32) if face_weight > 0 else None
    return PairSet(
        before=np.stack(b_list),
        after=np.stack(a_list),
        weights=weights_arr,
        names=names,
        view=np.stack(v_list) if any_aligned else None,  # as the service: a view where a pair was aligned
    )


def _pair_weights(
    region: np.ndarray, mask_path: Path | None, face_weight: float, size: int, alignment
) -> np.ndarray:
    """Weights for the before's aligned ``region``: from a mask drawn over the whole before (cut and
    turned like the before), else from faces detected in the region."""
    from rlcore import faces
    from rlcore.align import warp_before

    if mask_path is not None:
        mask = imageio.load_image(mask_path)  # uint8 HxWx3; the first channel is used (255 = face)
        weights = np.asarray(faces.mask_to_weights(mask, face_weight), dtype=np.float32)
        weights = warp_before(weights, alignment, out_size=region.shape[1::-1])
        return _resize_weights(weights, size)
    weights = np.asarray(faces.face_weights(region, face_weight), dtype=np.float32)
    if weights.shape != (size, size):
        weights = _resize_weights(weights, size)
    return weights


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly inside (or below) a folder, sorted."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def load_images(directory: str | Path, max_side: int = 1024, warn: Callable[[str], None] | None = None):
    """Loads every readable photo of a folder as uint8 (H, W, 3), downscaled to at most max_side."""
    from PIL import Image

    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    images = []
    for path in list_images(directory):
        try:
            img = imageio.load_image(path, max_pixels=max_side * max_side)
        except Exception as exc:
            warn(f"skipped {path}: unreadable image ({type(exc).__name__}: {exc})")
            continue
        h, w = img.shape[:2]
        if max(h, w) > max_side:
            scale = max_side / max(h, w)
            img = np.asarray(
                Image.fromarray(img).resize(
                    (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX
                )
            )
        images.append(img)
    if not images:
        raise DataError(f"no readable photos in {directory}")
    return images


def random_crops(
    images: list[np.ndarray], n: int, rng: np.random.Generator, size: int = THUMB_SIZE, min_frac: float = 0.3
) -> np.ndarray:
    """n thumbnails of random crops (side 30%..100% of the photo, any aspect up to 2:1)."""
    from PIL import Image

    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        ch = int(h * rng.uniform(min_frac, 1.0))
        cw = int(np.clip(ch * np.exp(rng.uniform(-0.7, 0.7)) * w / h, 8, w))
        ch = max(8, ch)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = np.asarray(
            Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BOX)
        )
    return out


# --- offline sample photos (for the shipped base model, tests and the benchmark) -----------------------

SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
    "matplotlib:grace_hopper.jpg",
)


# The shipped base model's photos: the natural and scientific colour photos above except chelsea, flower
# and grace_hopper, which bench/bench_quality.py keeps for held-out pairs (no base-model leakage).
BASE_PHOTOS = (
    "astronaut",
    "coffee",
    "rocket",
    "sklearn:china.jpg",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)


def sample_photo(name: str) -> np.ndarray:
    """One of SAMPLE_PHOTOS as uint8 (H, W, 3); needs scikit-image / scikit-learn / matplotlib installed."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name.split(":", 1)[1]), dtype=np.uint8)
    if name.startswith("matplotlib:"):
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data(name.split(":", 1)[1]) as f:
            return np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.asarray(img[..., :3], dtype=np.uint8)


def sample_photos(names: tuple[str, ...] | list[str] = SAMPLE_PHOTOS) -> Iterator[tuple[str, np.ndarray]]:
    for name in names:
        yield name, sample_photo(name)


def export_sample_photos(
    out_dir: str | Path, names: tuple[str, ...] | list[str] = SAMPLE_PHOTOS
) -> list[Path]:
    """Writes the offline sample photos as PNG files into out_dir (the train-base input folder)."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in sample_photos(names):
        path = out / (name.split(":")[-1].rsplit(".", 1)[0] + ".png")
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths
