"""Before/after pairs as an editor brings them, for the quality benchmark.

An editor's pairs are exports of different photos: crops of any aspect ratio, at the size the export
preset gave, shot with the camera's own exposure and white-balance errors, and edited in a real editing
program.  Here:

* exports: crops of the benchmark's real photos (bench/photos.py, one role each), each pair from the next
  photo in turn, so that the first k pairs come from k distinct photos as far as the photos go; aspect
  ratios of real exports (3:2, 4:3, 1:1, 16:9, portrait too), 35-100 % of the photo's area, long side
  WORK_SIDE;
* befores: camera-like exposure / white-balance / contrast / saturation errors (bench.styles.camera_befores);
* afters: the befores edited by a style, at the export's size (local operations such as RawTherapee's
  sharpening and local contrast act at that scale), then both reduced to the 64x64 thumbnails that
  fine-tuning and the service compare (rlcore.imageio.thumbnail).

The befores of a role do not depend on the style: every style edits the same photos, so that one style's
model can be scored on another style's afters (the wrong-editor control).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench import photos, rawtherapee
from bench.cache import save_arrays
from bench.styles import STYLES as SYNTHETIC_STYLES
from bench.styles import camera_befores
from rlcore.imageio import thumbnail

WORK_SIDE = 320  # long side of an export while the style edits it
ASPECTS = (3 / 2, 2 / 3, 4 / 3, 3 / 4, 1.0, 16 / 9)
MIN_AREA = 0.35
CACHE = photos.CACHE_DIR / "pairs"
STYLES = tuple(SYNTHETIC_STYLES) + tuple(rawtherapee.STYLES)


@dataclass
class Pairs:
    before: np.ndarray  # uint8 (N, 64, 64, 3)
    after: np.ndarray
    photo: list[str]  # the photo each pair was cut from

    def head(self, n: int) -> Pairs:
        return Pairs(self.before[:n], self.after[:n], self.photo[:n])

    def distinct_photos(self) -> int:
        return len(set(self.photo))


def missing(style: str) -> str | None:
    """Why a style cannot be made here (None: it can)."""
    if style in SYNTHETIC_STYLES:
        return None
    if style in rawtherapee.STYLES:
        return rawtherapee.missing()
    return f"unknown style {style!r} (known: {', '.join(STYLES)})"


def exports(role: str, n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """n camera-like befores at export size from the photos of role, cycling through the photos."""
    rng = np.random.default_rng(seed)
    pool = photos.load(role)
    order = rng.permutation(len(pool))
    befores, names = [], []
    for i in range(n):
        name, img = pool[order[i % len(pool)]]
        h, w = img.shape[:2]
        aspect = ASPECTS[rng.integers(len(ASPECTS))]
        area = rng.uniform(MIN_AREA, 1.0) * h * w
        ch = int(min(h, np.sqrt(area / aspect)))
        cw = int(min(w, ch * aspect))
        ch = int(min(ch, cw / aspect))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(np.ascontiguousarray(img[y : y + ch, x : x + cw]))
        crop.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
        befores.append(camera_befores(np.asarray(crop)[None], rng)[0])
        names.append(name)
    return befores, names


def edit(style: str, befores: list[np.ndarray]) -> list[np.ndarray]:
    """The befores edited by a style, each at its own size."""
    if style in SYNTHETIC_STYLES:
        return [SYNTHETIC_STYLES[style](b) for b in befores]
    return rawtherapee.apply(style, befores)


def make(style: str, role: str, n: int, seed: int) -> Pairs:
    """n thumbnail pairs of a style from photos of role (cached under var/: RawTherapee is slow)."""
    key = hashlib.sha256(f"{style}|{role}|{n}|{seed}|{WORK_SIDE}|{MIN_AREA}|v1".encode()).hexdigest()[:16]
    cached = CACHE / f"{style}-{role}-{n}-{seed}-{key}.npz"
    if cached.exists():
        data = np.load(cached)
        return Pairs(data["before"], data["after"], list(data["photo"]))
    befores, names = exports(role, n, seed)
    afters = edit(style, befores)
    pairs = Pairs(np.stack([thumbnail(b) for b in befores]), np.stack([thumbnail(a) for a in afters]), names)
    save_arrays(cached, before=pairs.before, after=pairs.after, photo=np.array(names))
    return pairs
