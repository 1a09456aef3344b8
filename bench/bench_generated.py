"""The instant model on many generated styles: a second judge that is not bench/styles.py.

bench_quality.py judges on nine styles, so a variant of the instant model moves its mean by a point or
two at random (per style by up to 18 points between variants that differ in one setting), and choosing by
it alone tunes to those nine. Here the same measurement runs on N styles drawn from rlcore.stylegen (the
prior's generator, with a style seed its training does not draw) applied to the benchmark's own befores:
training pairs from its train-role photos, scoring on 30 pairs of its heldout-role photos (neither seen by
the prior), at the thumbnails' size. Per style: the instant model (finetune with seconds=0) on the first
k pairs, scored as bench_quality.py scores it, gap closed = (no edit - model) / (no edit - per-image
optimum); styles whose gap is under 1 dE00 are left out of the means (their ratio is noise).

Use it to choose (lower noise, styles nobody tuned to), bench_quality.py to confirm on real looks; a
change that helps only on one of them says where generated styles and real ones differ.

    .venv/bin/python bench/bench_generated.py --pairs 10 --out var/generated.json
    .venv/bin/python bench/bench_generated.py --pairs 10 --config aug_strength=0.5 --compare var/generated.json

Cost on this 2-core machine: the per-image optima once per draw (about 5 minutes for 60 styles, cached
under var/), then about 3 minutes per pair count for 60 styles (10 pairs; 50 pairs about 9).
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
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_quality as bq  # noqa: E402
from bench import machine  # noqa: E402
from bench import pairs as bench_pairs  # noqa: E402
from bench.cache import save_array, save_arrays  # noqa: E402
from rlcore import stylegen  # noqa: E402
from rlcore.agent import PairSet, finetune  # noqa: E402
from rlcore.imageio import thumbnail  # noqa: E402
from rlcore.malloc import keep_freed_memory  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402

warnings.filterwarnings("ignore")

TRAIN_PAIRS, HELDOUT_PAIRS = 50, 30
MIN_GAP = 1.0  # dE00: styles the per-image optimum barely improves on say nothing about a model


def befores(role: str, n: int, seed: int) -> np.ndarray:
    """The benchmark's camera-like befores of a role as thumbnails (style-independent)."""
    exports, _ = bench_pairs.exports(role, n, seed)
    return np.stack([thumbnail(b) for b in exports])


def make_data(n_styles: int, style_seed: int, data_seed: int) -> dict[str, np.ndarray]:
    """Befores and every style's afters, train and heldout (cached: the wallpapers' crops take a while)."""
    cache = bench_pairs.CACHE / f"generated-{n_styles}-{style_seed}-{data_seed}-v1.npz"
    if cache.exists():
        with np.load(cache) as d:
            return {k: d[k] for k in d.files}
    train, held = (
        befores("train", TRAIN_PAIRS, data_seed),
        befores("heldout", HELDOUT_PAIRS, data_seed + 1000),
    )
    styles = stylegen.random_styles(n_styles, torch.Generator().manual_seed(style_seed))

    def afters(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).repeat(n_styles, 1, 1, 1)
        which = torch.arange(n_styles).repeat_interleave(len(images))
        return stylegen.apply(styles, which, batch)[0].numpy().reshape(n_styles, *images.shape)

    data = {"train": train, "held": held, "train_after": afters(train), "held_after": afters(held)}
    save_arrays(cache, **data)
    return data


def optimum_task(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    torch.set_num_threads(1)
    return bq.per_image_optimum(before, after, bq.QUICK.cma_iters, 0)


def instant_task(
    style: int, k: int, pairs: PairSet, held: PairSet, base_path: str, overrides: list[str]
) -> dict:
    """One style's instant model from its first k training pairs, scored on its held-out pairs."""
    torch.set_num_threads(1)
    train = PairSet(pairs.before[:k], pairs.after[:k])
    result = finetune(train, base=load_model(base_path), seconds=0, seed=0, config=bq.config(overrides))
    sliders = result.model.predict_thumbnails(held.before)
    delta_e = float(bq.delta_e(held.before, held.after, sliders).mean())
    return {"style": style, "pairs": k, "model": delta_e, "seconds": result.metrics["seconds"]}


def judged(row: dict) -> bool:
    """Whether a style's gap is large enough for its ratio to mean something (MIN_GAP)."""
    return row["no_edit"] - row["optimum"] >= MIN_GAP


def gap(row: dict) -> float:
    return bq.gap_closed(row["no_edit"], row["model"], row["optimum"])


def summary(rows: list[dict], k: int) -> dict:
    kept = [r for r in rows if r["pairs"] == k and judged(r)]
    gaps = [gap(r) for r in kept]
    return {
        "pairs": k,
        "styles": len(kept),
        "mean_gap_closed": float(np.mean(gaps)),
        "pooled_gap_closed": sum(r["no_edit"] - r["model"] for r in kept)
        / sum(r["no_edit"] - r["optimum"] for r in kept),
        "mean_seconds": float(np.mean([r["seconds"] for r in kept])),
    }


def compare(rows: list[dict], other: list[dict], k: int) -> str:
    """Paired per-style differences (this run - the other) of gap closed, in points."""
    mine = {r["style"]: r for r in rows if r["pairs"] == k}
    theirs = {r["style"]: r for r in other if r["pairs"] == k}
    both = [s for s in mine if s in theirs and judged(mine[s])]
    if not both:
        return f"{k} pairs: no style in common with the compared run"
    d = 100 * np.array([gap(mine[s]) - gap(theirs[s]) for s in both])
    return (
        f"{k} pairs, this run - the compared one: {d.mean():+.2f} points per style (standard error "
        f"{d.std(ddof=1) / np.sqrt(len(d)):.2f}), {int((d > 0.5).sum())} better, {int((d < -0.5).sum())} worse "
        f"by more than half a point, of {len(d)}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", type=int, default=60, help="how many generated styles")
    p.add_argument("--pairs", default="10", help="comma-separated training pair counts (at most 50)")
    p.add_argument("--style-seed", type=int, default=555, help="which styles (rlcore.stylegen's seed)")
    p.add_argument("--data-seed", type=int, default=0, help="which befores (bench/pairs.py's seed)")
    p.add_argument("--jobs", type=int, default=2, help="processes")
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fine-tuning Config field (repeatable)")  # fmt: skip
    p.add_argument("--compare", help="a previous run's JSON: print the paired differences")
    p.add_argument("--out", default="var/bench_generated.json")
    args = p.parse_args(argv)
    counts = [int(k) for k in args.pairs.split(",")]
    if not counts or min(counts) < 2 or max(counts) > TRAIN_PAIRS:
        p.error(f"--pairs: counts from 2 to {TRAIN_PAIRS}")
    bq.config(args.config)  # refuse unknown --config fields before any work
    other = json.loads(Path(args.compare).read_text())["rows"] if args.compare else None

    data = make_data(args.styles, args.style_seed, args.data_seed)
    n = args.styles
    optimum_cache = bench_pairs.CACHE / f"generated-optimum-{n}-{args.style_seed}-{args.data_seed}-v1.npy"
    ctx = multiprocessing.get_context("spawn")
    # initializer: the workers' allocator settings (rlcore/malloc.py)
    with ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=keep_freed_memory) as pool:
        if optimum_cache.exists():
            optimum = np.load(optimum_cache)
        else:
            jobs = pool.map(optimum_task, [data["held"]] * n, list(data["held_after"]))
            optimum = np.stack(list(tqdm(jobs, total=n, desc="per-image optima")))
            save_array(optimum_cache, optimum)
        jobs = [
            pool.submit(instant_task, s, k, PairSet(data["train"], data["train_after"][s]),
                        PairSet(data["held"], data["held_after"][s]), args.base, args.config)
            for k in counts
            for s in range(n)
        ]  # fmt: skip
        rows = [job.result() for job in tqdm(jobs, desc="instant models")]
    for r in rows:
        held, after = data["held"], data["held_after"][r["style"]]
        r["no_edit"] = float(bq.delta_e(held, after).mean())
        r["optimum"] = float(bq.delta_e(held, after, optimum[r["style"]]).mean())

    command = shlex.join([".venv/bin/python", "bench/bench_generated.py", *(argv or sys.argv[1:])])
    summaries = [summary(rows, k) for k in counts]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"command": command, "machine": machine.describe(), "summaries": summaries, "rows": rows},
            indent=1,
        )
    )
    print(f"\n{command}\n{machine.summary()}\n")
    print("| pairs | styles | mean gap closed | pooled | instant model's mean s |")
    print("|---|---|---|---|---|")
    for s in summaries:
        print(f"| {s['pairs']} | {s['styles']} | {100 * s['mean_gap_closed']:.2f} % | "
              f"{100 * s['pooled_gap_closed']:.2f} % | {s['mean_seconds']:.1f} |")  # fmt: skip
    if other is not None:
        print()
        for k in counts:
            print(compare(rows, other, k))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
