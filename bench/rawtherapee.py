"""Real expert styles for the quality benchmark: RawTherapee's bundled profiles, applied by its own engine.

Unlike bench/styles.py these edits are written by RawTherapee's authors for real photographs (tone curves,
local contrast, saturation...), so a personal model that matches them has learnt a style nobody designed
for rlcore's editor.  Only three profiles are used here; the others are kept for an independent check.

rawtherapee-cli starts slowly, so apply() converts all uncached images of a call in one batch, and keeps
each result on disk (var/bench-cache/rawtherapee/) keyed by the profile's content and the image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.cache import save_array

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "var" / "bench-cache" / "rawtherapee"
CLI = "rawtherapee-cli"
PACKAGE = "rawtherapee"

# Benchmark style name -> profile path relative to RawTherapee's profiles directory.
STYLES = {
    "rt_brighten": "Non-raw/Brighten.pp3",
    "rt_film_low": "Standard Film Curve - ISO Low.pp3",
    "rt_film_medium": "Standard Film Curve - ISO Medium.pp3",
}

# rawtherapee-cli 5.9 segfaults now and then on images smaller than about 100 x 100 (seen with the ISO
# Medium profile's denoiser), so smaller images are mirror-padded to this side and cropped back after.
MIN_SIDE = 128

# Where distributions install the bundled profiles when they are not next to the binary's prefix.
SYSTEM_SHARE_DIRS = (Path("/usr/share/rawtherapee"), Path("/usr/local/share/rawtherapee"))


def missing() -> str | None:
    """None when rawtherapee-cli is installed, else what to install."""
    if shutil.which(CLI) is None:
        return f"{CLI} not found: install the Debian package {PACKAGE} (apt-get install -y {PACKAGE})"
    return None


def profile_path(style: str) -> Path:
    """The bundled .pp3 of a style, looked up under the binary's prefix first, then the system dirs."""
    if style not in STYLES:
        raise KeyError(f"unknown RawTherapee style {style!r}; known: {sorted(STYLES)}")
    cli = shutil.which(CLI)
    share_dirs = [Path(cli).resolve().parents[1] / "share" / "rawtherapee"] if cli else []
    for share in [*share_dirs, *SYSTEM_SHARE_DIRS]:
        path = share / "profiles" / STYLES[style]
        if path.is_file():
            return path
    raise FileNotFoundError(f"profile {STYLES[style]!r} not found; is the {PACKAGE} package installed?")


def apply(style: str, images: list[np.ndarray], cache_dir: Path | None = None) -> list[np.ndarray]:
    """RawTherapee's edit of each uint8 RGB image (same order, same size), cached on disk."""
    problem = missing()
    if problem:
        raise RuntimeError(problem)
    profile = profile_path(style)
    cache_dir = Path(cache_dir or CACHE_DIR)
    profile_bytes = profile.read_bytes()
    images = [np.ascontiguousarray(img, dtype=np.uint8) for img in images]
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"images must be (H, W, 3) uint8, got shape {img.shape}")
    cached = [cache_dir / f"{_key(profile_bytes, img)}.npy" for img in images]
    todo = [i for i, path in enumerate(cached) if not path.exists()]
    if todo:
        outputs = _run(profile, [images[i] for i in todo])
        for i, out in zip(todo, outputs, strict=True):
            save_array(cached[i], out)
    return [np.load(path) for path in cached]


def _key(profile_bytes: bytes, img: np.ndarray) -> str:
    digest = hashlib.sha256(profile_bytes)
    digest.update(repr(img.shape).encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


def _run(profile: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """One rawtherapee-cli batch: 8-bit sRGB TIFFs in, 8-bit TIFFs out, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="rawtherapee-") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        dst.mkdir()
        inputs = [src / f"{i:05d}.tif" for i in range(len(images))]
        for path, img in zip(inputs, images, strict=True):
            Image.fromarray(_pad(img)).save(path, format="TIFF")
        cmd = [
            CLI,
            "-q",
            "-a",
            "-Y",
            "-o",
            str(dst),
            "-p",
            str(profile),
            "-t",
            "-b8",
            "-c",
            *map(str, inputs),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        outputs = [dst / path.name for path in inputs]
        if result.returncode != 0 or not all(path.exists() for path in outputs):
            log = (result.stderr.strip() or result.stdout.strip())[-4000:]
            raise RuntimeError(f"{CLI} failed (exit {result.returncode}) with {profile.name}:\n{log}")
        edited = []
        for path, img in zip(outputs, images, strict=True):
            with Image.open(path) as out:
                arr = np.asarray(out.convert("RGB"), dtype=np.uint8)
            if arr.shape != _pad(img).shape:
                raise RuntimeError(f"{CLI} with {profile.name} changed the size {img.shape} -> {arr.shape}")
            edited.append(np.ascontiguousarray(arr[: img.shape[0], : img.shape[1]]))
    return edited


def _pad(img: np.ndarray) -> np.ndarray:
    """img mirrored past its bottom and right edges up to MIN_SIDE (unchanged when large enough)."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w)), (0, 0)), mode="symmetric")
