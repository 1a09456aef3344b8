"""Quality benchmark of the personal models on synthetic expert styles (see docs/agent.md for results).

For each style (bench/styles.py): 50 training pairs cut from TRAIN_PHOTOS and 30 held-out pairs cut from
HELDOUT_PHOTOS (photos the training pairs never used).  Held-out mean dE00 (64x64 thumbnails) for:

* no edit;
* best preset: one slider vector optimised with CMA-ES over the training pairs;
* base: the shipped base model (distort-and-recover, no style);
* personal: rlcore.agent.finetune on the 50 training pairs (its own 20 % validation split), --seconds;
* optimum: per held-out image CMA-ES on the sliders with the target known (the editor's practical limit).

gap closed = (no edit - personal) / (no edit - optimum).  With --efficiency it also measures the seed's
sample-efficiency claim: environment steps to reach a validation dE00 with actor-sampled actions versus
uniformly random ones (same critic, same step budget).

    .venv/bin/python bench/bench_quality.py                      # all styles, 60 s fine-tuning each
    .venv/bin/python bench/bench_quality.py --styles warm_film --efficiency
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.styles import HELDOUT_PHOTOS, STYLES, TRAIN_PHOTOS, make_pairs  # noqa: E402
from rlcore import editor, reward  # noqa: E402
from rlcore.agent import Config, PairSet, finetune  # noqa: E402
from rlcore.checkpoint import BASE_MODEL_PATH, load_model, model_bytes  # noqa: E402
from rlcore.data import sample_photo  # noqa: E402

warnings.filterwarnings("ignore")


def delta_e(before: np.ndarray, after: np.ndarray, sliders: np.ndarray | None = None) -> np.ndarray:
    """Per-pair mean dE00 between (edited) befores and afters."""
    b = torch.from_numpy(before)
    if sliders is not None:
        b = editor.apply_batch(b, torch.from_numpy(np.asarray(sliders)))
    return reward.mean_delta_e(b, reward.srgb_to_lab(torch.from_numpy(after))).numpy()


def _cma(n_problems: int, objective, iters: int, seed: int, popsize: int = 16) -> np.ndarray:
    """Minimises n independent problems in lockstep (one batched objective call per generation).

    objective(X (n_problems, popsize, 12) actions in [-1, 1]) -> (n_problems, popsize) losses.
    Returns the best actions found, rounded to slider integers (n_problems, 12).
    """
    import cma

    opts = {"bounds": [-1, 1], "popsize": popsize, "verbose": -9, "seed": seed + 1, "tolfun": 1e-4}
    ess = [cma.CMAEvolutionStrategy(np.zeros(12), 0.3, dict(opts)) for _ in range(n_problems)]
    best_x = np.zeros((n_problems, 12))
    best_f = objective(best_x[:, None, :])[:, 0]
    for _ in range(iters):
        xs = np.stack([np.round(np.asarray(es.ask()) * 100) / 100 for es in ess])  # (n, pop, 12)
        fs = objective(xs)
        for i, es in enumerate(ess):
            es.tell(list(xs[i]), list(fs[i]))
            j = int(np.argmin(fs[i]))
            if fs[i, j] < best_f[i]:
                best_f[i], best_x[i] = fs[i, j], xs[i, j]
    return np.round(best_x * 100).astype(np.int64)


def per_image_optimum(before: np.ndarray, after: np.ndarray, iters: int, seed: int) -> np.ndarray:
    b = torch.from_numpy(before)
    t_lab = reward.srgb_to_lab(torch.from_numpy(after))
    n = len(before)

    def objective(x):
        pop = x.shape[1]
        s = torch.from_numpy(np.round(x.reshape(-1, 12) * 100))
        edited = editor.apply_batch(b.repeat_interleave(pop, 0), s)
        return reward.mean_delta_e(edited, t_lab.repeat_interleave(pop, 0)).numpy().reshape(n, pop)

    return _cma(n, objective, iters, seed)


def best_preset(before: np.ndarray, after: np.ndarray, iters: int, seed: int) -> np.ndarray:
    b = torch.from_numpy(before)
    t_lab = reward.srgb_to_lab(torch.from_numpy(after))
    n = len(before)

    def objective(x):
        pop = x.shape[1]
        s = torch.from_numpy(np.round(x.reshape(pop, 12) * 100))
        edited = editor.apply_batch(b.repeat(pop, 1, 1, 1), s.repeat_interleave(n, 0))
        de = reward.mean_delta_e(edited, t_lab.repeat(pop, 1, 1, 1)).numpy().reshape(pop, n)
        return de.mean(1)[None]

    return _cma(1, objective, iters, seed)[0]


def steps_to_reach(curve: list[tuple[int, float]], level: float, batch_envs: int) -> float:
    for step, v in curve:
        if v <= level:
            return step * batch_envs
    return float("inf")


def config(args, **fixed) -> Config:
    """The fine-tuning Config: defaults, --config KEY=VALUE overrides, then `fixed`."""
    cfg = Config()
    for item in args.config:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key):
            raise SystemExit(f"--config: Config has no field {key!r}")
        setattr(cfg, key, type(getattr(cfg, key))(value))
    for key, value in fixed.items():
        setattr(cfg, key, value)
    return cfg


def efficiency(train: PairSet, base, seed: int, max_steps: int, args) -> dict:
    """Env steps to reach a validation dE00: actor-sampled vs uniformly random exploration."""
    out = {}
    for mode in ("actor", "uniform"):
        cfg = config(args, exploration=mode, val_every=5, patience=10**9)
        t = time.monotonic()
        res = finetune(train, base=base, seconds=10**9, seed=seed, max_steps=max_steps, config=cfg)
        out[mode] = {
            "curve": res.curve,
            "best": min(v for _, v in res.curve),
            "seconds": time.monotonic() - t,
        }
    start = out["actor"]["curve"][0][1]  # the base actor's validation dE00 (both runs start there)
    cfg = Config()
    levels = {}
    # the level both reach (the worse of the two bests) and a halfway level
    common = max(out["actor"]["best"], out["uniform"]["best"])
    for name, level in (("halfway", start - 0.5 * (start - common)), ("common_best", common)):
        sa = steps_to_reach(out["actor"]["curve"], level, cfg.batch_envs)
        su = steps_to_reach(out["uniform"]["curve"], level, cfg.batch_envs)
        levels[name] = {
            "val_delta_e": round(level, 3),
            "env_steps_actor": sa,
            "env_steps_uniform": su,
            "ratio_uniform_over_actor": round(su / sa, 2) if sa > 0 else None,
        }
    return {
        "max_steps": max_steps,
        "env_steps": max_steps * cfg.batch_envs,
        "val_start_base": round(start, 3),
        "best_actor": round(out["actor"]["best"], 3),
        "best_uniform": round(out["uniform"]["best"], 3),
        "levels": levels,
    }


def run_style(style: str, args, base, photos_train, photos_held) -> dict:
    tb, ta = make_pairs(style, photos_train, args.train, seed=args.seed)
    hb, ha = make_pairs(style, photos_held, args.heldout, seed=args.seed + 1000)
    row: dict = {"style": style}
    row["no_edit"] = float(delta_e(hb, ha).mean())
    t = time.monotonic()
    preset = best_preset(tb, ta, args.cma_iters, args.seed)
    row["preset"] = float(delta_e(hb, ha, np.repeat(preset[None], len(hb), 0)).mean())
    row["preset_sliders"] = dict(zip(editor.ADJUSTMENTS, preset.tolist(), strict=True))
    row["base"] = float(delta_e(hb, ha, base.predict_thumbnails(hb)).mean())
    t = time.monotonic()
    res = finetune(PairSet(tb, ta), base=base, seconds=args.seconds, seed=args.seed, config=config(args))
    row["finetune_seconds"] = round(time.monotonic() - t, 1)
    row["finetune_metrics"] = res.metrics
    row["personal"] = float(delta_e(hb, ha, res.model.predict_thumbnails(hb)).mean())
    row["model_bytes"] = len(model_bytes(res.model))
    t = time.monotonic()
    opt = per_image_optimum(hb, ha, args.cma_iters, args.seed)
    row["optimum"] = float(delta_e(hb, ha, opt).mean())
    row["optimum_seconds"] = round(time.monotonic() - t, 1)
    gap = row["no_edit"] - row["optimum"]
    row["gap_closed"] = (row["no_edit"] - row["personal"]) / gap if gap > 0 else float("nan")
    row["gap_closed_base"] = (row["no_edit"] - row["base"]) / gap if gap > 0 else float("nan")
    row["gap_closed_preset"] = (row["no_edit"] - row["preset"]) / gap if gap > 0 else float("nan")
    if args.efficiency:
        row["efficiency"] = efficiency(PairSet(tb, ta), base, args.seed, args.efficiency_steps, args)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| style | no edit | best preset | base | personal | optimum | gap closed | beats preset | fine-tune s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['style']} | {r['no_edit']:.2f} | {r['preset']:.2f} | {r['base']:.2f} | {r['personal']:.2f} | "
            f"{r['optimum']:.2f} | {100 * r['gap_closed']:.1f} % | {'yes' if r['personal'] < r['preset'] else 'no'} | "
            f"{r['finetune_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", default="all", help="comma-separated style names or 'all'")
    p.add_argument("--train", type=int, default=50)
    p.add_argument("--heldout", type=int, default=30)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument("--cma-iters", type=int, default=150)
    p.add_argument(
        "--train-photos",
        default=",".join(TRAIN_PHOTOS),
        help="comma-separated sample photos the training pairs are cut from (rlcore.data.sample_photo names)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fine-tuning Config field, e.g. --config aug_target=unchanged (repeatable)",
    )
    p.add_argument("--efficiency", action="store_true")
    p.add_argument("--efficiency-steps", type=int, default=600)
    p.add_argument("--out", default="var/bench_quality.json")
    args = p.parse_args(argv)
    styles = list(STYLES) if args.styles == "all" else args.styles.split(",")
    config(args)  # refuse unknown --config fields before any work
    base = load_model(args.base)
    train_names = args.train_photos.split(",")
    if set(train_names) & set(HELDOUT_PHOTOS):
        p.error(f"--train-photos must not include the held-out photos {', '.join(HELDOUT_PHOTOS)}")
    photos_train = [sample_photo(n) for n in train_names]
    photos_held = [sample_photo(n) for n in HELDOUT_PHOTOS]
    rows = []
    for style in styles:
        row = run_style(style, args, base, photos_train, photos_held)
        rows.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if k != "preset_sliders"}, default=str), file=sys.stderr
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1, default=str))
    print(table(rows))
    for r in rows:
        if "efficiency" in r:
            print(f"\nsample efficiency ({r['style']}): {json.dumps(r['efficiency'], default=str)}")
    print(f"\ncpu threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    print(
        "command: .venv/bin/python bench/bench_quality.py "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
