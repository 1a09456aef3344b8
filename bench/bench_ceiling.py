"""How far can fine-tuning go on the quality benchmark, even with help it never gets in production?

For each style of bench/bench_quality.py (same pairs, same held-out photos, same 60 s fine-tuning):

1. augmentation targets: mean dE00 of the jittered copies' targets to what the style really gives for the
   jittered befores, for the seed's targets (the after unchanged) and the emulator's (rlcore.emulator);
2. gap closed on the held-out pairs by fine-tuning
   * as shipped (emulated targets),
   * "true augmentation": the copies' targets computed by the style itself (an oracle: a real editor
     cannot be asked to edit thousands of jittered copies),
   * "in-distribution + true augmentation": as above, and the 50 training pairs cut from the held-out
     photos themselves (other crops and camera jitter than the held-out pairs): no content shift at all.

The last row is a ceiling for this method at this budget, not a product setting. gap closed = (no edit -
model) / (no edit - per-image CMA-ES optimum), as in bench_quality.py.

    .venv/bin/python bench/bench_ceiling.py --out var/bench_ceiling.json      # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_quality import delta_e, per_image_optimum  # noqa: E402
from bench.styles import HELDOUT_PHOTOS, STYLES, TRAIN_PHOTOS, make_pairs  # noqa: E402
from rlcore import agent, emulator  # noqa: E402
from rlcore.agent import Config, PairSet, camera_jitter, finetune  # noqa: E402
from rlcore.data import sample_photo  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402

warnings.filterwarnings("ignore")

_shipped_augment_pool = agent._augment_pool


def true_style_pool(style_fn):
    """agent._augment_pool with the copies' targets made by the style itself (diagnostic only)."""

    def augment_pool(ps, idx, copies, strength, seed, env_size, aug_target="unchanged"):
        pool = _shipped_augment_pool(ps, idx, copies, strength, seed, env_size, "unchanged")
        truth = [torch.from_numpy(style_fn(x))[None] for x in pool.before[len(idx) :].numpy()]
        targets = torch.cat([pool.target, *truth])
        return agent._Pool(pool.before, torch.arange(len(pool)), pool.original, targets, None, env_size)

    return augment_pool


def target_errors(style: str, before: np.ndarray, after: np.ndarray, seed: int) -> dict:
    b, a = torch.from_numpy(before), torch.from_numpy(after)
    jittered = camera_jitter(b, torch.Generator().manual_seed(seed), 1.0)
    truth = np.stack([STYLES[style](x) for x in jittered.numpy()])
    moved = emulator.moved_targets(emulator.fit(b, a, seed=seed), b, jittered, a).numpy()
    return {
        "unchanged": float(delta_e(after, truth).mean()),
        "emulated": float(delta_e(moved, truth).mean()),
    }


def gap_closed(base, train, hb, ha, seconds, seed, no_edit, optimum) -> float:
    res = finetune(train, base=base, seconds=seconds, seed=seed, config=Config())
    personal = float(delta_e(hb, ha, res.model.predict_thumbnails(hb)).mean())
    return (no_edit - personal) / (no_edit - optimum)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", default="all")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cma-iters", type=int, default=120)
    p.add_argument("--out", default="var/bench_ceiling.json")
    args = p.parse_args(argv)
    styles = list(STYLES) if args.styles == "all" else args.styles.split(",")
    base = load_model(BASE_MODEL_PATH)
    photos_train = [sample_photo(n) for n in TRAIN_PHOTOS]
    photos_held = [sample_photo(n) for n in HELDOUT_PHOTOS]
    rows = []
    for style in styles:
        t = time.monotonic()
        tb, ta = make_pairs(style, photos_train, 50, seed=args.seed)
        hb, ha = make_pairs(style, photos_held, 30, seed=args.seed + 1000)
        ib, ia = make_pairs(style, photos_held, 50, seed=args.seed)  # other crops of the held-out photos
        no_edit = float(delta_e(hb, ha).mean())
        optimum = float(delta_e(hb, ha, per_image_optimum(hb, ha, args.cma_iters, args.seed)).mean())
        row = {"style": style, "no_edit": no_edit, "optimum": optimum}
        row["target_error"] = target_errors(style, tb, ta, args.seed)
        row["shipped"] = gap_closed(base, PairSet(tb, ta), hb, ha, args.seconds, args.seed, no_edit, optimum)
        agent._augment_pool = true_style_pool(STYLES[style])
        try:
            row["true_augmentation"] = gap_closed(
                base, PairSet(tb, ta), hb, ha, args.seconds, args.seed, no_edit, optimum
            )
            row["in_distribution_true_augmentation"] = gap_closed(
                base, PairSet(ib, ia), hb, ha, args.seconds, args.seed, no_edit, optimum
            )
        finally:
            agent._augment_pool = _shipped_augment_pool
        row["seconds"] = round(time.monotonic() - t, 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print("| style | target error: unchanged | emulated | gap closed: shipped | true augmentation | "
          "in-distribution + true augmentation |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        te = r["target_error"]
        print(
            f"| {r['style']} | {te['unchanged']:.2f} | {te['emulated']:.2f} | {100 * r['shipped']:.1f} % | "
            f"{100 * r['true_augmentation']:.1f} % | {100 * r['in_distribution_true_augmentation']:.1f} % |"
        )
    print(
        "command: .venv/bin/python bench/bench_ceiling.py "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
