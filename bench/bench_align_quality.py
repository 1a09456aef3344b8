"""What alignment buys the model: fine-tuning on cropped, straightened, resized exports (results in docs/pairs.md).

The quality benchmark's training pairs (bench/pairs.py: real photographs, camera-like befores, a style's
edit at export size), but each after is then cut the way editors export it (bench.bench_align.make_pair,
with the colours left as the style made them): a crop of 50-90 % of the before's area (its aspect ratio
half of the time, a common one otherwise), turned by up to 10 degrees, exported at 35-120 % of the crop's
resolution (at least 64 pixels on the short side) and re-encoded as JPEG at quality 70-95. Three ways to
train on them, each with rlcore.agent.finetune for the same budget and seed:

* as is: the after simply resized to the before's thumbnail (what training did before alignment
  existed; ``python -m rlcore finetune`` without alignment does the same): every pixel compares two
  different places;
* aligned: each pair uploaded through the service's own preparation (personalize.pairs.prepare_pair: the
  code every upload runs, rlcore.align to find the frame, the before's thumbnail cut from the region the
  after shows); pairs it refuses are left out, as the service would;
* true frame: the before's thumbnail cut from the region the after truly shows (the generator's own
  transform, through the same rlcore.align.warp_before), every pair kept: what a perfect alignment
  would give, so that aligned - true frame is the cost of the estimate and true frame - clean the cost
  of the cut itself (a part of each photo, a small re-encoded export);
* clean: the pairs before any cut (exactly bench_quality's training pairs): the reference.

Held-out pairs are always the quality benchmark's clean ones (the model is judged on how it edits new
photos), scored as bench/bench_quality.py scores them: mean dE00 and gap closed = (no edit - model) /
(no edit - optimum).

    .venv/bin/python bench/bench_align_quality.py --quick   # 4 styles, 30 s, one seed (~3 min on 2 cores)
    .venv/bin/python bench/bench_align_quality.py           # every style, 60 s, seeds 0 and 1

Prepared pairs are cached under var/bench-cache/pairs/, results written to var/bench_align_quality.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_quality as bq  # noqa: E402
from bench import pairs as bench_pairs  # noqa: E402
from bench import photos  # noqa: E402
from bench.bench_align import frame_error, make_pair  # noqa: E402
from bench.cache import save_arrays  # noqa: E402
from rlcore.agent import PairSet, finetune  # noqa: E402
from rlcore.imageio import thumbnail  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model, model_bytes  # noqa: E402

VARIANTS = ("as_is", "aligned", "true_frame", "true_frame_region", "clean")
CROP_AREA = (0.5, 0.9)  # of the before's area
CUT_SEED = 15  # the cuts' random generator (the pairs themselves use bench_quality's DATA_SEED)
QUICK_STYLES = ("bright_airy", "moody_matte", "clean_neutral", "rt_film_medium")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _thumb_from_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")
    import django

    django.setup()


def cut_pairs(style: str, n: int) -> dict:
    """The style's first n training pairs with their afters cut as exports, in the three variants.

    Returns arrays (N, 64, 64, 3) per variant ("aligned" only for the pairs the service accepted), the
    refusals' reasons, and per accepted pair the estimated frame's error (fraction of the before's width).
    Cached under var/: RawTherapee and the alignment take a while.
    """
    key = (
        f"{style}|{n}|{bq.DATA_SEED}|{CUT_SEED}|{CROP_AREA}|{bench_pairs.WORK_SIDE}|{bench_pairs.MIN_AREA}|v3"
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cached = bench_pairs.CACHE / f"cut-{style}-train-{n}-{digest}.npz"
    if cached.exists():
        data = np.load(cached, allow_pickle=False)
        out = {k: data[k] for k in data.files}
        out["refused"] = [str(r) for r in out["refused"]]
        return out

    _django()
    from personalize.images import UploadError, inspect_bytes
    from personalize.pairs import prepare_pair
    from rlcore.align import Alignment, warp_before

    clean = bq._pairs(style, "train", n)  # bench_quality's own training pairs (the reference)
    befores, _ = bench_pairs.exports("train", n, bq.DATA_SEED)
    afters = bench_pairs.edit(style, befores)
    assert np.array_equal(np.stack([thumbnail(b) for b in befores]), clean.before), "exports changed"
    rng = np.random.default_rng(CUT_SEED)
    as_is_after, aligned_before, aligned_after, aligned_view, true_before = [], [], [], [], []
    errors, areas, turns, took = [], [], [], []
    refused = []
    for i, (before, after) in enumerate(zip(befores, afters, strict=True)):
        cut = make_pair(
            rng, after, min_area=CROP_AREA[0], max_area=CROP_AREA[1], strength=0, retouch_chance=0
        )
        as_is_after.append(thumbnail(cut.after))
        true_before.append(thumbnail(warp_before(before, cut.truth)))
        areas.append(cut.area)
        turns.append(cut.rotation_deg)
        started = time.perf_counter()
        try:
            prepared = prepare_pair(
                inspect_bytes("before", _png(before), f"before_{i}.png"),
                inspect_bytes("after", _png(cut.after), f"after_{i}.png"),
            )
        except UploadError as exc:
            refused.append(f"pair {i}: {exc.reason}")
            continue
        finally:
            took.append(time.perf_counter() - started)
        aligned_before.append(_thumb_from_png(prepared.before_thumb))
        aligned_after.append(_thumb_from_png(prepared.after_thumb))
        aligned_view.append(_thumb_from_png(prepared.view_thumb or prepared.before_thumb))
        found = Alignment.from_json(prepared.alignment, cut.truth.before_size, cut.truth.after_size)
        errors.append(frame_error(found, cut.truth))
    out = {
        "clean_before": clean.before,
        "clean_after": clean.after,
        "as_is_before": clean.before,
        "as_is_after": np.stack(as_is_after),
        "aligned_before": np.stack(aligned_before),
        "aligned_after": np.stack(aligned_after),
        "aligned_view": np.stack(aligned_view),
        "true_frame_before": np.stack(true_before),
        "true_frame_after": np.stack(as_is_after),
        "true_frame_view": clean.before,
        "true_frame_region_before": np.stack(true_before),
        "true_frame_region_after": np.stack(as_is_after),
        "frame_error": np.array(errors),
        "area": np.array(areas),
        "rotation_deg": np.array(turns),
        "prepare_seconds": np.array(took),
        "refused": np.array(refused, dtype=str),
    }
    save_arrays(cached, **out)
    out["refused"] = refused
    return out


def finetune_variant(
    style: str,
    variant: str,
    before: np.ndarray,
    after: np.ndarray,
    view: np.ndarray | None,
    seconds: float,
    seed: int,
    base_path: str,
) -> dict:
    """bench_quality.finetune_task's run on given pairs (same output, so bench_quality.score_run scores it)."""
    torch.set_num_threads(1)
    started = time.monotonic()
    pairs = PairSet(before, after, view=view)
    res = finetune(pairs, base=load_model(base_path), seconds=seconds, seed=seed)
    return {
        "style": style,
        "variant": variant,
        "seed": seed,
        "model": model_bytes(res.model),
        "metrics": res.metrics,
        "wall_seconds": round(time.monotonic() - started, 1),
        "distinct_photos": len(before),
    }


def run(styles: list[str], plan: bq.Plan, args) -> dict:
    print(f"cutting and aligning {args.pairs} training pairs per style", flush=True)
    cuts = {style: cut_pairs(style, args.pairs) for style in tqdm(styles, desc="pairs", unit="style")}
    held = {style: bq._pairs(style, "heldout", plan.heldout) for style in styles}
    results, refs = {}, {}
    started = time.monotonic()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(
                finetune_variant,
                style,
                variant,
                cuts[style][f"{variant}_before"],
                cuts[style][f"{variant}_after"],
                cuts[style].get(f"{variant}_view"),
                plan.seconds,
                seed,
                str(args.base),
            )
            for seed in plan.seeds
            for style in styles
            for variant in args.variants
        ]
        futures += [pool.submit(bq.references_task, style, plan, args.seed) for style in styles]
        n_runs = len(plan.seeds) * len(styles) * len(args.variants)
        print(f"{n_runs} fine-tuning runs of {plan.seconds:g} s in {args.jobs} processes", flush=True)
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs", unit="run"):
            out = future.result()
            if "variant" in out:
                results[out["style"], out["variant"], out["seed"]] = out
            else:
                refs[out["style"]] = out

    rows = []
    for style in styles:
        h, cut = held[style], cuts[style]
        no_edit = float(bq.delta_e(h.before, h.after).mean())
        optimum = float(bq.delta_e(h.before, h.after, refs[style]["optimum"]).mean())
        row = {"style": style, "no_edit": no_edit, "optimum": optimum, "seeds": {}}
        for seed in plan.seeds:
            scored = {}
            for variant in args.variants:
                s = bq.score_run(results[style, variant, seed], h, no_edit, optimum)
                s.pop("sliders")
                scored[variant] = s
            row["seeds"][str(seed)] = scored
        for variant in args.variants:
            runs = [row["seeds"][str(seed)][variant] for seed in plan.seeds]
            row[variant] = float(np.mean([r["delta_e"] for r in runs]))
            row[f"{variant}_gap_closed"] = float(np.mean([r["gap_closed"] for r in runs]))
            row[f"{variant}_pairs"] = len(cut[f"{variant}_before"])
        errors = cut["frame_error"]
        row["alignment"] = {
            "accepted": len(cut["aligned_before"]),
            "refused": cut["refused"],
            "frame_error_median": float(np.median(errors)),
            "frame_error_max": float(errors.max()),
            "within_1pct": int((errors <= 0.01).sum()),
            "area_mean": float(cut["area"].mean()),
            "rotation_abs_mean": float(np.abs(cut["rotation_deg"]).mean()),
        }
        rows.append(row)
    return {
        "plan": asdict(plan),
        "variants": list(args.variants),
        "pairs": args.pairs,
        "crop_area": CROP_AREA,
        "rows": rows,
        "wall_seconds": round(time.monotonic() - started, 1),
        "jobs": args.jobs,
        "cores": os.cpu_count(),
        "photos": photos.summary(),
    }


DIFFERENCES = (("aligned", "clean"), ("aligned", "true_frame"), ("true_frame", "true_frame_region"),
               ("as_is", "clean"))  # fmt: skip


def table(result: dict) -> str:
    pct = bq._pct
    variants = result["variants"]
    diffs = [(a, b) for a, b in DIFFERENCES if a in variants and b in variants]
    names = [v.replace("_", " ") for v in variants] + [f"{a} - {b}".replace("_", " ") for a, b in diffs]
    out = [
        f"| style | no edit | optimum | {' | '.join(names)} | aligned pairs | frame error median / max |",
        "|---" * (len(names) + 5) + "|",
    ]
    for r in result["rows"]:
        a = r["alignment"]
        cells = [f"{r[v]:.2f} ({pct(r[f'{v}_gap_closed'])})" for v in variants]
        cells += [f"{100 * (r[f'{x}_gap_closed'] - r[f'{y}_gap_closed']):+.1f} points" for x, y in diffs]
        out.append(
            f"| {r['style']} | {r['no_edit']:.2f} | {r['optimum']:.2f} | {' | '.join(cells)} | "
            f"{a['accepted']} of {result['pairs']} | "
            f"{100 * a['frame_error_median']:.2f} % / {100 * a['frame_error_max']:.2f} % |"
        )
    mean = {v: np.mean([r[f"{v}_gap_closed"] for r in result["rows"]]) for v in variants}
    out.append(
        "\nmean gap closed: "
        + ", ".join(f"{v.replace('_', ' ')} {pct(mean[v])}" for v in variants)
        + f" ({len(result['rows'])} styles, seeds {', '.join(map(str, result['plan']['seeds']))})"
    )
    refused = [f"{r['style']}: {why}" for r in result["rows"] for why in r["alignment"]["refused"]]
    if refused:
        out.append("refused at upload: " + "; ".join(refused))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_STYLES)}; 30 s, one seed")
    p.add_argument("--styles", help="comma-separated style names or 'all' (default: the mode's)")
    p.add_argument("--seconds", type=float, help="fine-tuning budget (default: the mode's)")
    p.add_argument("--pairs", type=int, default=bq.MAIN_PAIRS, help="training pairs per style")
    p.add_argument("--heldout", type=int, help="held-out pairs per style (default: the mode's)")
    p.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="processes")
    p.add_argument("--seeds", help="fine-tuning seeds, comma-separated (default: the mode's)")
    p.add_argument("--seed", type=int, default=0, help="CMA-ES seed (the optimum's)")
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)",
    )
    p.add_argument("--out", default="var/bench_align_quality.json")
    args = p.parse_args(argv)
    args.variants = args.variants.split(",")
    if unknown := set(args.variants) - set(VARIANTS):
        p.error(f"unknown variants: {', '.join(sorted(unknown))}")
    plan = bq.QUICK if args.quick else bq.FULL
    plan = bq.Plan(
        **{
            **asdict(plan),
            "pairs_curve": (),
            "budget_curve": (),
            "seconds": args.seconds if args.seconds is not None else plan.seconds,
            "heldout": args.heldout or plan.heldout,
            "seeds": tuple(int(x) for x in args.seeds.split(",")) if args.seeds else plan.seeds,
        }
    )
    chosen = args.styles or (",".join(QUICK_STYLES) if args.quick else "all")
    wanted = list(bench_pairs.STYLES) if chosen == "all" else chosen.split(",")
    styles = bq.runnable(wanted)
    if not styles:
        p.error("no style can be run here")
    photos.fetch()
    result = run(styles, plan, args)
    result["skipped"] = [s for s in wanted if s not in styles]
    command = ".venv/bin/python bench/bench_align_quality.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    result["command"] = command
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(result, indent=1, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x))
    )
    print(table(result))
    print(f"\n{result['wall_seconds']:.0f} s wall clock, {args.jobs} processes, {os.cpu_count()} cores")
    print(f"command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
