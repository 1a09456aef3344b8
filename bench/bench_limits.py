"""What limits the personal model: the policy's form, or what a few photos can say about a style?

On bench_quality.py's pairs (50 training pairs cut from 6 photos, 30 held-out pairs from other photos, the
quick mode's per-image optimum), per style, gap closed on the held-out pairs by:

* instant: the shipped instant model (finetune with seconds=0: the prior's code, search, distillation);
* prior code: the prior's policy with the code its encoder reads from the 50 training pairs, nothing else;
* emulator: the style emulator (rlcore.emulator) fitted to the training pairs, run on each held-out before,
  and the editor's sliders searched to match its output (a predictor built from the after, not the sliders);
* linear from training optima: a ridge regression of the training pairs' per-image optimal sliders (CMA-ES
  with the after known) on the 61 features, the penalty picked on the held-out pairs (so optimistic): the
  best a linear policy fitted to perfect labels from these photos can do;
* linear in-sample: the same regression fitted to the held-out pairs' own optima (penalty 10): what the
  features and a linear policy could express if the photos were known. A large gap between the last two
  says the limit is generalisation from the training photos, not the form of the policy.

And the prior on its own ground: generated styles (rlcore.stylegen, as in its training) applied to crops
of the photos it trained on, and of photos it never saw (the benchmark's train and heldout roles); its code
from 10 pairs of each style, the other 14 photos edited (its validation procedure), gap closed against the
per-pair searched sliders. The drop from the first row to the others is what the prior loses on new
photos; the drop from those to its "prior code" column above, what it loses on styles not generated.

gap closed = (no edit - model) / (no edit - optimum), as in bench_quality.py.

    .venv/bin/python bench/bench_limits.py --jobs 2 --out var/bench_limits.json     # ~9 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_quality as bq  # noqa: E402
from bench import photos  # noqa: E402
from bench.pairs import STYLES  # noqa: E402
from rlcore import emulator, prior, reward  # noqa: E402
from rlcore.agent import PairSet, finetune, search_actions  # noqa: E402
from rlcore.features import features, resize_u8  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402
from rlcore.networks import StyleActor  # noqa: E402

warnings.filterwarnings("ignore")

LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0)
# kept out of the shipped prior's training to check its default on (rlcore/assets/BASE_MODEL.md)
PRIOR_CHECK_PHOTOS = ("astronaut", "ihc", "retina")
PRIOR_PHOTO_SETS = ("the prior's own photos", "train role (unseen)", "heldout role (unseen)")
COLUMNS = ("instant", "prior_code", "emulator", "linear_from_training_optima", "linear_in_sample")


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    """Ridge regression on standardised x (bias unpenalised): a function x' -> predictions."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = np.c_[(x - mean) / std, np.ones(len(x))]
    penalty = np.eye(xs.shape[1]) * lam
    penalty[-1, -1] = 0
    w = np.linalg.solve(xs.T @ xs + penalty, xs.T @ y)
    return lambda z: np.c_[(z - mean) / std, np.ones(len(z))] @ w


def style_task(style: str, base_path: str, cma_iters: int) -> dict:
    torch.set_num_threads(1)
    plan = bq.QUICK
    train = bq._pairs(style, "train", bq._train_size(plan)).head(bq.MAIN_PAIRS)
    held = bq._pairs(style, "heldout", plan.heldout)
    optimum_held = bq.references_task(style, plan, 0)["optimum"]
    no_edit = float(bq.delta_e(held.before, held.after).mean())
    optimum = float(bq.delta_e(held.before, held.after, optimum_held).mean())

    def closed(sliders: np.ndarray) -> float:
        sliders = np.clip(np.round(sliders), -100, 100).astype(np.int64)
        return bq.gap_closed(no_edit, float(bq.delta_e(held.before, held.after, sliders).mean()), optimum)

    base = load_model(base_path)
    row = {"style": style, "no_edit": no_edit, "optimum": optimum}
    instant = finetune(PairSet(train.before, train.after), base=base, seconds=0, seed=0).model
    row["instant"] = closed(instant.predict_thumbnails(held.before))

    feats_held = features(held.before)
    f_train, f_held = features(train.before).double().numpy(), feats_held.double().numpy()
    with torch.no_grad():
        prior_code = StyleActor(base.actor.policy, base.encoder.encode(train.before, train.after))
        row["prior_code"] = closed(prior_code(feats_held).numpy() * 100)

    style_model = emulator.fit(train.before, train.after, seed=0)
    small = resize_u8(torch.from_numpy(held.before), 16)
    emulated = (emulator.emulate(style_model, small) * 255).round().to(torch.uint8)
    found, _ = search_actions(
        small,
        reward.srgb_to_lab(emulated),
        torch.zeros(len(small), 12),
        48,
        12,
        torch.Generator().manual_seed(0),
    )
    row["emulator"] = closed(found.numpy() * 100)

    optimum_train = bq.per_image_optimum(train.before, train.after, cma_iters, 0)
    row["linear_from_training_optima"] = max(
        closed(ridge(f_train, optimum_train, lam)(f_held)) for lam in LAMBDAS
    )
    row["linear_in_sample"] = closed(ridge(f_held, optimum_held, 10.0)(f_held))
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def prior_photos_task(photo_set: str, base_path: str, n_styles: int = 96, seed: int = 777) -> dict:
    torch.set_num_threads(1)
    if photo_set == PRIOR_PHOTO_SETS[0]:
        images = [img for name, img in photos.load("base") if name not in PRIOR_CHECK_PHOTOS]
    else:
        images = [img for _, img in photos.load(photo_set.split()[0])]
    base = load_model(base_path)
    bank = prior.make_bank(images, n_styles, 24, seed=seed, env_size=32)
    queries = bank.n_photos - prior.VAL_CONTEXT
    with torch.no_grad():
        model = prior.style_validation_delta_e(bank, base.encoder, base.actor.policy)
        no_edit = prior.queries_delta_e(bank, torch.zeros(n_styles, queries, 12))
        searched, _ = prior.search_best_actions(bank, 16, 24, 12, torch.Generator().manual_seed(seed))
        best = prior.queries_delta_e(bank, searched[:, prior.VAL_CONTEXT :])
    row = {"photos": photo_set, "no_edit": no_edit, "prior": model, "searched": best}
    row["gap_closed"] = bq.gap_closed(no_edit, model, best)
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", default="all")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cma-iters", type=int, default=60)
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument("--out", default="var/bench_limits.json")
    args = p.parse_args(argv)
    styles = list(STYLES) if args.styles == "all" else args.styles.split(",")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        prior_rows = pool.map(prior_photos_task, PRIOR_PHOTO_SETS, [args.base] * len(PRIOR_PHOTO_SETS))
        rows = list(pool.map(style_task, styles, [args.base] * len(styles), [args.cma_iters] * len(styles)))
        prior_rows = list(prior_rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"styles": rows, "prior_on_generated_styles": prior_rows}, indent=1))
    print("| style | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for r in [*rows, {"style": "**mean**", **{c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}}]:
        print(f"| {r['style']} | " + " | ".join(f"{100 * r[c]:.1f} %" for c in COLUMNS) + " |")
    print("\nthe prior on generated styles (code from 10 pairs, 14 photos edited; dE00)\n")
    print("| photos | no edit | prior | searched | gap closed |\n|---|---|---|---|---|")
    for r in prior_rows:
        print(f"| {r['photos']} | {r['no_edit']:.2f} | {r['prior']:.2f} | {r['searched']:.2f} | "
              f"{100 * r['gap_closed']:.1f} % |")  # fmt: skip
    print(
        "command: .venv/bin/python bench/bench_limits.py "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
