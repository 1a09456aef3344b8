"""Full resolution: decode + edit + encode of a large JPEG, seconds and peak memory.

Each measurement runs in a fresh subprocess so ru_maxrss is that edit's peak (imports included); the
test photo is made in another one, because Linux carries ru_maxrss across fork and exec, so a child of
a process that once held a big array would report that process's peak.
Run: .venv/bin/python bench/bench_fullres.py [--megapixels 12 24]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from rlcore.imageio import edit_file
start = time.perf_counter()
edit_file(sys.argv[1], sys.argv[2], {"exposure": 30, "contrast": 20, "shadows": 40, "vibrance": 25, "temperature": -10})
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_photo(path: Path, megapixels: float) -> None:
    """A real photo (scikit-image's coffee) upscaled to the size, with grain so JPEG is photo-like."""
    import cv2
    import numpy as np
    from PIL import Image
    from skimage import data

    photo = data.coffee()
    h = int((megapixels * 1e6 * photo.shape[0] / photo.shape[1]) ** 0.5)
    w = int(megapixels * 1e6 / h)
    big = cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).normal(0, 4, big.shape)
    big = np.clip(big + noise, 0, 255).astype(np.uint8)
    Image.fromarray(big).save(path, quality=92)


def measure(src: Path, dst: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(dst)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12.0, 24.0])
    parser.add_argument("--make", nargs=2, metavar=("PATH", "MEGAPIXELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_photo(Path(args.make[0]), float(args.make[1]))
        return
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{'MP':>5}{'seconds':>10}{'peak MB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.megapixels:
            src, dst = Path(tmp) / f"in_{mp}.jpg", Path(tmp) / f"out_{mp}.jpg"
            subprocess.run([sys.executable, __file__, "--make", str(src), str(mp)], check=True)
            result = measure(src, dst)
            print(f"{mp:>5.0f}{result['seconds']:>10.2f}{result['peak_mb']:>10.0f}")


if __name__ == "__main__":
    main()
