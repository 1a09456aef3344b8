"""Environment steps per second: the batched rlcore route versus the naive route, side by side.

One step = edit one 64x64 thumbnail with one slider vector + its reward against the expert's target.

* batched: ``apply_batch`` on N thumbnails at once, then ``mean_delta_e`` against the target Lab
  computed once (as an RL environment does: the target and the unedited error never change);
* naive: ``rlcore.editor.apply`` per image, then colour-science for Lab and CIEDE2000 of edited and
  target, per image.

Run: .venv/bin/python bench/bench_env.py [--batch 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import colour
import numpy as np
import torch
from skimage import data

from rlcore.color import srgb_to_lab
from rlcore.editor import ADJUSTMENTS, apply, apply_batch
from rlcore.imageio import thumbnail
from rlcore.reward import mean_delta_e


def _thumbnails(n: int, rng: np.random.Generator) -> np.ndarray:
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    # Random crops of real photos, so the thumbnails differ like a data set's do.
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        h, w = p.shape[:2]
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        out.append(thumbnail(p[y : y + h // 2, x : x + w // 2]))
    return np.stack(out)


def _best_rate(fn, steps_per_call: int, repeats: int) -> float:
    """Best of ``repeats`` timed calls (this CPU is shared, the best is the least disturbed)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return steps_per_call / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--naive", type=int, default=64, help="images per naive timing run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    before = _thumbnails(args.batch, rng)
    sliders = rng.integers(-60, 61, (args.batch, len(ADJUSTMENTS)))
    target = apply_batch(
        torch.from_numpy(before), torch.from_numpy(rng.integers(-40, 41, sliders.shape))
    ).numpy()

    before_t, sliders_t = torch.from_numpy(before), torch.from_numpy(sliders)
    target_lab = srgb_to_lab(torch.from_numpy(target))  # once per pair
    baseline = mean_delta_e(before_t, target_lab)  # once per pair

    def batched() -> torch.Tensor:
        return baseline - mean_delta_e(apply_batch(before_t, sliders_t), target_lab)

    def lab(img: np.ndarray) -> np.ndarray:
        return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(img / 255.0))

    def naive() -> list[float]:
        rewards = []
        for i in range(args.naive):
            edited = apply(before[i], dict(zip(ADJUSTMENTS, (int(v) for v in sliders[i]), strict=True)))
            t = lab(target[i])
            r = colour.delta_E(lab(before[i]), t, method="CIE 2000").mean()
            rewards.append(r - colour.delta_E(lab(edited), t, method="CIE 2000").mean())
        return rewards

    # Same answer both ways, or the speed comparison means nothing.
    agree = np.abs(batched()[: args.naive].numpy() - np.array(naive())).max()
    fast = _best_rate(batched, args.batch, args.repeats)
    slow = _best_rate(naive, args.naive, max(3, args.repeats // 5))

    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"torch {torch.__version__}, threads {args.threads}, 64x64 thumbnails, batch {args.batch}")
    print(f"{'route':<10}{'steps/s':>12}")
    print(f"{'batched':<10}{fast:>12.0f}")
    print(f"{'naive':<10}{slow:>12.0f}")
    print(f"ratio {fast / slow:.1f}x; max reward difference between routes {agree:.2e} dE00")


if __name__ == "__main__":
    main()
