"""Real photographs for the quality benchmark, each with one fixed role: base, train or heldout.

Two sources, both free to redistribute and reachable offline or through the distribution's own mirror:

* the sample photos that ship inside scikit-image, scikit-learn and matplotlib (rlcore.data loads them);
* the Debian wallpaper package ``plasma-workspace-wallpapers``, fetched at benchmark time with
  ``apt-get download`` + ``dpkg -x`` into var/bench-cache/ (git-ignored; nothing is committed).

Every image was looked at and only real photographs are listed (landscapes, animals, objects...).  Left
out after looking:

* ``ukui-wallpapers``: all 12 backgrounds are rendered art (ribbons, flat geometry, a calla lily, a goldfish
  and a mouse drawn as illustrations, the 20.04 logo): no photograph, so the package is not downloaded.
* ``desktop-base``: Debian theme art (grub / plymouth / login backgrounds, logos, a desktop screenshot):
  no photograph, so the package is not downloaded either.
* plasma-workspace-wallpapers: Altai, Autumn (painting), Canopee, Cascade, Cluster, Elarun, Flow,
  FlyingKonqui, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell,
  Volna (polygonal render): vector, low-poly or painted art.
* package samples: hubble_deep_field, immunohistochemistry and retina are scientific images (kept in
  "base" only because the shipped base model already trained on them); camera, coins and moon are
  greyscale test images; colorwheel, logos, text, textures, microscopy and the gift-box clip art are not
  photographs.

Roles: "base" photos train the base model / style prior, "train" photos make the editor's training pairs,
"heldout" photos only the held-out pairs, so a held-out score never rewards memorising a photo.  The split
is written in each entry (not drawn from a hash) so that it never moves when the list grows.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageOps

# Run as a script (the documented --export): `bench` and `rlcore` become importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cache import save_array
from rlcore.data import sample_photo

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "var" / "bench-cache"
ROLES = ("base", "train", "heldout")
PYTHON = "python"  # the `package` of photos that ship in Python packages; `path` is rlcore's sample name
PLASMA = "plasma-workspace-wallpapers"
WALLPAPERS = "usr/share/wallpapers"


@dataclass(frozen=True)
class Photo:
    """One photograph: where it comes from (Debian package and path inside it), its role and why it is in."""

    name: str
    package: str
    path: str
    role: str
    reason: str


PHOTOS: tuple[Photo, ...] = (
    # Python package samples: rlcore's base-model photos stay "base"; the others were never trained on.
    Photo("astronaut", PYTHON, "astronaut", "base", "photo: astronaut portrait with flag (skimage)"),
    Photo("coffee", PYTHON, "coffee", "base", "photo: cup of coffee on a table (skimage)"),
    Photo("rocket", PYTHON, "rocket", "base", "photo: rocket on the launch pad (skimage)"),
    Photo("china", PYTHON, "sklearn:china.jpg", "base", "photo: Chinese temple in a park (scikit-learn)"),
    Photo("hubble", PYTHON, "hubble_deep_field", "base", "scientific: Hubble deep field (base model's)"),
    Photo("ihc", PYTHON, "immunohistochemistry", "base", "scientific: stained tissue (base model's)"),
    Photo("retina", PYTHON, "retina", "base", "scientific: retina fundus photo (base model's)"),
    Photo("chelsea", PYTHON, "chelsea", "train", "photo: tabby cat close-up (skimage)"),
    Photo("motorcycle", PYTHON, "stereo_motorcycle", "train", "photo: red motorcycle in a garage (skimage)"),
    Photo("flower", PYTHON, "sklearn:flower.jpg", "heldout", "photo: orange dahlia close-up (scikit-learn)"),
    Photo("grace_hopper", PYTHON, "matplotlib:grace_hopper.jpg", "heldout", "photo: portrait in uniform"),
    # plasma-workspace-wallpapers: these photos ship at 2560x1600 only (no ~1920 px version).
    Photo("grey", PLASMA, f"{WALLPAPERS}/Grey/contents/images/2560x1600.jpg", "base",
          "photo: black-and-white curved facade (greyscale file)"),
    Photo("cold_ripple", PLASMA, f"{WALLPAPERS}/ColdRipple/contents/images/2560x1600.jpg", "base",
          "photo: wooden pier in grey mist, nearly monochrome"),
    Photo("kite", PLASMA, f"{WALLPAPERS}/Kite/contents/images/2560x1600.jpg", "base",
          "photo: rainbow kite in a deep blue sky with clouds"),
    Photo("darkest_hour", PLASMA, f"{WALLPAPERS}/DarkestHour/contents/images/2560x1600.jpg", "base",
          "photo: foggy lake and trees at blue hour"),
    Photo("by_the_water", PLASMA, f"{WALLPAPERS}/BytheWater/contents/images/2560x1600.jpg", "train",
          "photo: pier planks over a lake at sunset, shallow focus"),
    Photo("fallen_leaf", PLASMA, f"{WALLPAPERS}/FallenLeaf/contents/images/2560x1600.jpg", "train",
          "photo: autumn maple leaf on the ground, warm bokeh"),
    Photo("path", PLASMA, f"{WALLPAPERS}/Path/contents/images/2560x1600.jpg", "train",
          "photo: path through a dark green pine forest"),
    Photo("colorful_cups", PLASMA, f"{WALLPAPERS}/ColorfulCups/contents/images/2560x1600.jpg", "train",
          "photo: rows of blue and red plastic cups from above"),
    Photo("evening_glow", PLASMA, f"{WALLPAPERS}/EveningGlow/contents/images/2560x1600.jpg", "heldout",
          "photo: rowing boats on a lake shore under a sunset sky"),
    Photo("one_stands_out", PLASMA, f"{WALLPAPERS}/OneStandsOut/contents/images/2560x1600.jpg", "heldout",
          "photo: green plants from above, one with an orange flower"),
    Photo("summer_1am", PLASMA, f"{WALLPAPERS}/summer_1am/contents/images/2560x1600.jpg", "heldout",
          "photo: calm lake at a pink and violet summer dawn"),
)  # fmt: skip


def summary() -> dict[str, int]:
    """Number of photos per role."""
    counts = Counter(photo.role for photo in PHOTOS)
    return {role: counts[role] for role in ROLES}


def fetch(cache_dir: Path | None = None) -> Path:
    """Downloads and unpacks the Debian packages the photo list needs; a no-op when already unpacked.

    Returns the cache directory; the package ``PKG`` is unpacked in ``CACHE/debs/PKG/``.
    """
    cache_dir = Path(cache_dir or CACHE_DIR)
    for package in sorted({photo.package for photo in PHOTOS} - {PYTHON}):
        target = cache_dir / "debs" / package
        if (target / ".unpacked").exists():
            continue
        print(f"fetching Debian package {package} (apt-get download + dpkg -x) into {target}", flush=True)
        deb = _apt_download(package, cache_dir / "debs")
        subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
        missing = [p.path for p in PHOTOS if p.package == package and not (target / p.path).is_file()]
        if missing:
            raise RuntimeError(f"{package} ({deb.name}) lacks the listed photos {missing}")
        deb.unlink()
        (target / ".unpacked").touch()
    return cache_dir


def _apt_download(package: str, folder: Path) -> Path:
    """``apt-get download`` into folder, with one ``apt-get update`` and retry when the lists lack it."""
    folder.mkdir(parents=True, exist_ok=True)
    by_hand = f"cd {folder} && apt-get update && apt-get download {package}"
    for attempt in range(2):
        try:
            result = subprocess.run(
                ["apt-get", "download", package], cwd=folder, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise RuntimeError(f"apt-get not found: fetch {package} on a Debian system ({by_hand})") from None
        debs = sorted(folder.glob(f"{package}_*.deb"))
        if result.returncode == 0 and debs:
            return debs[-1]
        no_lists = "Unable to locate package" in result.stderr or "no installation candidate" in result.stderr
        if attempt == 0 and no_lists:
            print("apt lists lack it: running apt-get update, then retrying once", flush=True)
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            continue
        break
    raise RuntimeError(f"apt-get download {package} failed:\n{result.stderr.strip()}\nRun by hand: {by_hand}")


def load(role: str, max_side: int = 1024, cache_dir: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB H x W x 3) for every photo of role, the long side at most max_side.

    Downscaled arrays are cached as .npy next to the packages, so only the first call decodes the large
    wallpaper files (and fetches the packages when missing).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    cache_dir = Path(cache_dir or CACHE_DIR)
    out = []
    for photo in (p for p in PHOTOS if p.role == role):
        cached = cache_dir / "photos" / str(max_side) / f"{photo.name}.npy"
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_array(cached, _decode(photo, max_side, cache_dir))
        out.append((photo.name, np.load(cached)))
    return out


def _decode(photo: Photo, max_side: int, cache_dir: Path) -> np.ndarray:
    """The photo as RGB uint8 with EXIF orientation applied, shrunk (Lanczos) to fit max_side."""
    if photo.package == PYTHON:
        img = Image.fromarray(_python_sample(photo.path))
    else:
        img = ImageOps.exif_transpose(Image.open(fetch(cache_dir) / "debs" / photo.package / photo.path))
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def _python_sample(name: str) -> np.ndarray:
    """rlcore's sample photo, or the left view of scikit-image's stereo pair (the right one is a near copy)."""
    if name == "stereo_motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return sample_photo(name)


def export(role: str, folder: Path, max_side: int = 1024) -> list[Path]:
    """Writes the photos of a role as PNG files into folder (e.g. for ``python -m rlcore train-base``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in load(role, max_side):
        path = folder / f"{name}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="fetch the benchmark's photos; list them or export a role")
    parser.add_argument("--export", nargs=2, metavar=("ROLE", "FOLDER"), help="write a role's photos as PNG")
    args = parser.parse_args()
    fetch()
    if args.export:
        written = export(args.export[0], Path(args.export[1]))
        print(f"wrote {len(written)} photos of role {args.export[0]} to {args.export[1]}")
        raise SystemExit(0)
    by_source = Counter((p.role, p.package) for p in PHOTOS)
    for role, count in summary().items():
        sources = ", ".join(f"{pkg}: {n}" for (r, pkg), n in sorted(by_source.items()) if r == role)
        print(f"{role:8s} {count:3d}  ({sources})")
    for role in ROLES:
        sizes = [f"{name} {img.shape[1]}x{img.shape[0]}" for name, img in load(role)]
        print(f"{role}: " + ", ".join(sizes))
