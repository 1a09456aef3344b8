"""Quality benchmark: how much of each editor's style a personal model learns (results in docs/agent.md).

Pairs look like an editor's real work (bench/pairs.py): crops of real photographs at export sizes, with
camera-like errors, each pair from another photo as far as the photos go; training and held-out pairs come
from disjoint photos (bench/photos.py).  Styles: the six synthetic ones (bench/styles.py) and three expert
profiles applied by RawTherapee's own engine (bench/rawtherapee.py; skipped, with a message naming the
missing package, where rawtherapee-cli is absent).

Per style, held-out mean dE00 (64x64 thumbnails) for: no edit; best preset (one slider vector, CMA-ES on
the training pairs); base (the shipped model, before any fine-tuning); personal (rlcore.agent.finetune on
50 pairs for 60 s); optimum (per held-out image CMA-ES with the target known: the editor's limit).
gap closed = (no edit - model) / (no edit - optimum).  The full mode adds:

* pairs curve: gap closed with 5, 10, 20, 50, 200 training pairs at 60 s;
* budget curve: gap closed at 0 s (the instant model: the base, or a prior's code for the pairs, calibrated;
  no RL), 15, 60 and 300 s with 50 pairs;
* seed spread: the 60 s / 50 pairs run with seeds 0 and 1 (same pairs, other fine-tuning seed);
* wrong-editor control (both modes): each style's personal model scored on every other style's held-out
  pairs (all styles edit the same held-out befores); margin = best other model - own model, in dE00;
  beside it the margin at the optimum (every model its editor's limit: how far apart the looks are);
* a plot of both curves per style, next to the JSON.

    .venv/bin/python bench/bench_quality.py --quick          # < 10 min on 2 cores: 30 s, one seed
    .venv/bin/python bench/bench_quality.py                  # full mode (about an hour with --jobs 2)
    .venv/bin/python bench/bench_quality.py --quick --seconds 0 --pairs-curve 10 --data-seed 1
        # the instant model alone (deterministic: an exact A/B in ~2 min) on another draw of the pairs

The instant model has no time budget, so its figures are exact for a draw of the pairs, but one draw's
crops and camera errors move a style's figure by several points: compare changes over a few --data-seed.

Fine-tuning runs in --jobs processes of one thread each; timings assume nothing else loads the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shlex
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine, photos  # noqa: E402
from bench import pairs as bench_pairs  # noqa: E402
from bench.cache import save_arrays  # noqa: E402
from rlcore import editor, reward  # noqa: E402
from rlcore.agent import Config, PairSet, finetune  # noqa: E402
from rlcore.malloc import keep_freed_memory  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model, model_bytes  # noqa: E402

warnings.filterwarnings("ignore")

MAIN_PAIRS, MAIN_SECONDS = 50, 60.0
DATA_SEED = 0


@dataclass(frozen=True)
class Plan:
    seconds: float = MAIN_SECONDS  # the main column's budget
    pairs_curve: tuple[int, ...] = (5, 10, 20, 50, 200)
    budget_curve: tuple[float, ...] = (0.0, 15.0, 60.0, 300.0)  # 0: the instant model (no RL)
    seeds: tuple[int, ...] = (0, 1)
    heldout: int = 40
    cma_iters: int = 120
    data_seed: int = DATA_SEED  # which pairs: the training pairs' seed (the held-out pairs': + 1000)


FULL = Plan()
QUICK = Plan(seconds=30.0, pairs_curve=(), budget_curve=(), seeds=(0,), heldout=30, cma_iters=60)


@dataclass(frozen=True)
class Run:
    """One fine-tuning run of the benchmark."""

    style: str
    pairs: int
    seconds: float
    seed: int
    config: tuple[tuple[str, str], ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.style}/{self.pairs}p/{self.seconds:g}s/seed{self.seed}"


# ------------------------------------------------------------------------------------------------------
# Scoring and the CMA-ES references
# ------------------------------------------------------------------------------------------------------


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


def config(overrides, **fixed) -> Config:
    """The fine-tuning Config: defaults, KEY=VALUE overrides, then `fixed`."""
    cfg = Config()
    for item in overrides:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key):
            raise SystemExit(f"--config: Config has no field {key!r}")
        current = getattr(cfg, key)
        if isinstance(current, bool):  # bool("False") is True: parse the word
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--config {key}: expected true or false, got {value!r}")
            setattr(cfg, key, value.lower() in ("true", "1"))
        else:
            setattr(cfg, key, type(current)(value))
    for key, value in fixed.items():
        setattr(cfg, key, value)
    return cfg


# ------------------------------------------------------------------------------------------------------
# Work done in the pool's processes (one torch thread each)
# ------------------------------------------------------------------------------------------------------


def _pairs(style: str, role: str, n: int, data_seed: int = DATA_SEED) -> bench_pairs.Pairs:
    return bench_pairs.make(style, role, n, data_seed if role == "train" else data_seed + 1000)


def _train_size(plan: Plan) -> int:
    return max([MAIN_PAIRS, *plan.pairs_curve])


def finetune_task(run: Run, train_size: int, base_path: str, data_seed: int) -> dict:
    torch.set_num_threads(1)
    train = _pairs(run.style, "train", train_size, data_seed).head(run.pairs)
    t = time.monotonic()
    res = finetune(
        PairSet(train.before, train.after),
        base=load_model(base_path),
        seconds=run.seconds,
        seed=run.seed,
        config=config(f"{k}={v}" for k, v in run.config),
    )
    return {
        "run": asdict(run),
        "model": model_bytes(res.model),
        "metrics": res.metrics,
        "wall_seconds": round(time.monotonic() - t, 1),
        "distinct_photos": train.distinct_photos(),
    }


def references_task(style: str, plan: Plan, seed: int) -> dict:
    """The best single preset (on the 50 training pairs) and the per-image optimum (held-out).

    They depend on the pairs only, not on any model: cached under var/ for the next run.
    """
    torch.set_num_threads(1)
    train = _pairs(style, "train", _train_size(plan), plan.data_seed).head(MAIN_PAIRS)
    held = _pairs(style, "heldout", plan.heldout, plan.data_seed)
    digest = hashlib.sha256(
        b"".join(a.tobytes() for a in (train.before, train.after, held.before, held.after))
    ).hexdigest()[:16]
    cached = bench_pairs.CACHE / f"references-{style}-{plan.cma_iters}-{seed}-{digest}.npz"
    if cached.exists():
        data = np.load(cached)
        return {"style": style, "preset": data["preset"], "optimum": data["optimum"], "seconds": 0.0}
    t = time.monotonic()
    preset = best_preset(train.before, train.after, plan.cma_iters, seed)
    optimum = per_image_optimum(held.before, held.after, plan.cma_iters, seed)
    save_arrays(cached, preset=preset, optimum=optimum)
    return {"style": style, "preset": preset, "optimum": optimum, "seconds": round(time.monotonic() - t, 1)}


def efficiency_task(
    style: str, train_size: int, base_path: str, max_steps: int, overrides, data_seed: int
) -> dict:
    """Env steps to reach a validation dE00: actor-sampled vs uniformly random exploration."""
    torch.set_num_threads(1)
    train = _pairs(style, "train", train_size, data_seed).head(MAIN_PAIRS)
    base = load_model(base_path)
    out = {}
    for mode in ("actor", "uniform"):
        cfg = config(overrides, exploration=mode, val_every=5, patience=10**9)
        res = finetune(
            PairSet(train.before, train.after),
            base=base,
            seconds=10**9,
            seed=0,
            max_steps=max_steps,
            config=cfg,
        )
        out[mode] = {"curve": res.curve, "best": min(v for _, v in res.curve)}
    start = out["actor"]["curve"][0][1]  # the base actor's validation dE00 (both runs start there)
    batch = Config().batch_envs
    common = max(out["actor"]["best"], out["uniform"]["best"])  # the level both reach
    levels = {}
    for name, level in (("halfway", start - 0.5 * (start - common)), ("common_best", common)):
        sa = steps_to_reach(out["actor"]["curve"], level, batch)
        su = steps_to_reach(out["uniform"]["curve"], level, batch)
        levels[name] = {
            "val_delta_e": round(level, 3),
            "env_steps_actor": sa,
            "env_steps_uniform": su,
            "ratio_uniform_over_actor": round(su / sa, 2) if sa > 0 else None,
        }
    return {
        "style": style,
        "efficiency": {
            "max_steps": max_steps,
            "val_start_base": round(start, 3),
            "best_actor": round(out["actor"]["best"], 3),
            "best_uniform": round(out["uniform"]["best"], 3),
            "levels": levels,
        },
    }


# ------------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------------


def planned_runs(styles: list[str], plan: Plan, overrides: tuple) -> list[Run]:
    runs = []
    for style in styles:
        wanted = {(MAIN_PAIRS, plan.seconds, seed) for seed in plan.seeds}
        wanted |= {(n, plan.seconds, plan.seeds[0]) for n in plan.pairs_curve}
        wanted |= {(MAIN_PAIRS, s, plan.seeds[0]) for s in plan.budget_curve}
        runs += [Run(style, n, s, seed, overrides) for n, s, seed in sorted(wanted)]
    # longest first, so that the pool's processes finish together
    return sorted(runs, key=lambda r: -r.seconds)


def gap_closed(no_edit: float, model: float, optimum: float) -> float:
    gap = no_edit - optimum
    return (no_edit - model) / gap if gap > 0 else float("nan")


def score_run(out: dict, held: bench_pairs.Pairs, no_edit: float, optimum: float) -> dict:
    """A fine-tuning run's personal model on the held-out pairs."""
    sliders = load_model(out["model"]).predict_thumbnails(held.before)
    de = float(delta_e(held.before, held.after, sliders).mean())
    return {
        "delta_e": de,
        "gap_closed": gap_closed(no_edit, de, optimum),
        "wall_seconds": out["wall_seconds"],
        "distinct_photos": out["distinct_photos"],
        "strength": out["metrics"].get("strength"),
        "policy": out["metrics"].get("policy"),  # "instant"; "fine_tuned" or "hedged": RL validated better
        # what the run's own validation pairs said (crops of its training photos): beside the held-out score
        "val_delta_e_instant": out["metrics"].get("val_delta_e_instant"),
        "val_delta_e_personal": out["metrics"].get("val_delta_e_personal"),
        "sliders": sliders,
    }


def run_benchmark(styles: list[str], plan: Plan, args) -> dict:
    base_path = str(args.base)
    base = load_model(base_path)
    train_size = _train_size(plan)
    print(f"making pairs: {train_size} training and {plan.heldout} held-out per style", flush=True)
    data = {}
    for style in tqdm(styles, desc="pairs", unit="style"):
        data[style] = (
            _pairs(style, "train", train_size, plan.data_seed),
            _pairs(style, "heldout", plan.heldout, plan.data_seed),
        )
    held_before = data[styles[0]][1].before
    assert all(np.array_equal(held_before, data[s][1].before) for s in styles), "styles edit the same befores"

    overrides = tuple(tuple(item.partition("=")[::2]) for item in args.config)
    runs = planned_runs(styles, plan, overrides)
    results, refs, efficiency = {}, {}, {}
    context = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
    started = time.monotonic()
    # initializer: the workers' allocator settings (rlcore/malloc.py), so that runs get their budgets' worth of work
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=keep_freed_memory) as pool:
        futures = [pool.submit(finetune_task, run, train_size, base_path, plan.data_seed) for run in runs]
        futures += [pool.submit(references_task, style, plan, args.seed) for style in styles]
        if args.efficiency:
            futures += [
                pool.submit(
                    efficiency_task,
                    s,
                    train_size,
                    base_path,
                    args.efficiency_steps,
                    args.config,
                    plan.data_seed,
                )
                for s in styles
            ]
        work = sum(r.seconds for r in runs)
        print(
            f"{len(runs)} fine-tuning runs ({work / 60:.0f} min of budgets) in {args.jobs} processes",
            flush=True,
        )
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs", unit="run"):
            out = future.result()
            if "run" in out:
                results[Run(**{**out["run"], "config": tuple(map(tuple, out["run"]["config"]))})] = out
            elif "efficiency" in out:
                efficiency[out["style"]] = out["efficiency"]
            else:
                refs[out["style"]] = out

    rows = {}
    predictions = {}  # style -> sliders its main personal model predicts for the held-out befores
    for style in styles:
        train, held = data[style]
        no_edit = float(delta_e(held.before, held.after).mean())
        optimum = float(delta_e(held.before, held.after, refs[style]["optimum"]).mean())
        preset = refs[style]["preset"]
        preset_de = float(
            delta_e(held.before, held.after, np.repeat(preset[None], len(held.before), 0)).mean()
        )
        base_de = float(delta_e(held.before, held.after, base.predict_thumbnails(held.before)).mean())

        def score(run: Run, held=held, no_edit=no_edit, optimum=optimum) -> dict:
            return score_run(results[run], held, no_edit, optimum)

        main = {seed: score(Run(style, MAIN_PAIRS, plan.seconds, seed, overrides)) for seed in plan.seeds}
        predictions[style] = main[plan.seeds[0]].pop("sliders")
        for m in main.values():
            m.pop("sliders", None)
        seed0 = plan.seeds[0]
        row = {
            "style": style,
            "no_edit": no_edit,
            "preset": preset_de,
            "base": base_de,
            "personal": main[seed0]["delta_e"],
            "optimum": optimum,
            "gap_closed": main[seed0]["gap_closed"],
            "gap_closed_base": gap_closed(no_edit, base_de, optimum),
            "gap_closed_preset": gap_closed(no_edit, preset_de, optimum),
            "beats_preset": main[seed0]["delta_e"] < preset_de,
            "finetune_seconds": main[seed0]["wall_seconds"],
            "pairs": MAIN_PAIRS,
            "distinct_photos": main[seed0]["distinct_photos"],
            "strength": main[seed0]["strength"],
            "preset_sliders": dict(zip(editor.ADJUSTMENTS, preset.tolist(), strict=True)),
            "seeds": {str(s): {k: v for k, v in m.items()} for s, m in main.items()},
            "references_seconds": refs[style]["seconds"],
        }
        if len(plan.seeds) > 1:
            gaps = [m["gap_closed"] for m in main.values()]
            row["seed_spread"] = max(gaps) - min(gaps)
        row["pairs_curve"] = {}
        for n in plan.pairs_curve:
            s = score(Run(style, n, plan.seconds, seed0, overrides))
            s.pop("sliders")
            row["pairs_curve"][str(n)] = s
        row["budget_curve"] = {}
        for seconds in plan.budget_curve:
            s = score(Run(style, MAIN_PAIRS, seconds, seed0, overrides))
            s.pop("sliders")
            row["budget_curve"][f"{seconds:g}"] = s
        if style in efficiency:
            row["efficiency"] = efficiency[style]
        rows[style] = row

    # wrong-editor control: style t's model on style s's held-out afters (same befores)
    for style in styles:
        held = data[style][1]
        others = {
            other: float(delta_e(held.before, held.after, predictions[other]).mean())
            for other in styles
            if other != style
        }
        row = rows[style]
        row["wrong_editor"] = others
        if others:
            best_other = min(others, key=others.get)
            row["wrong_editor_best_other"] = best_other
            row["wrong_editor_margin"] = others[best_other] - row["personal"]
            # the same margin were every model its editor's limit (each style's per-image optimum): how far
            # apart the looks themselves are, what no model's margin can be expected to exceed
            best_other_at_optimum = min(
                float(delta_e(held.before, held.after, refs[other]["optimum"]).mean()) for other in others
            )
            row["wrong_editor_margin_at_optimum"] = best_other_at_optimum - row["optimum"]
    return {
        "plan": asdict(plan),
        "rows": list(rows.values()),
        "wall_seconds": round(time.monotonic() - started, 1),
        "jobs": args.jobs,
        "cores": os.cpu_count(),
        "machine": machine.describe(),
        "base_model": base.metadata.get("model_id"),
        "photos": photos.summary(),
    }


# ------------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------------


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f} %"


def tables(result: dict) -> str:
    rows, plan = result["rows"], result["plan"]
    out = [
        "| style | no edit | best preset | base | personal | optimum | gap closed | beats preset | "
        "wrong-editor margin | at the optimum | fine-tune s | pairs (photos) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        margin, limit = r.get("wrong_editor_margin"), r.get("wrong_editor_margin_at_optimum")
        out.append(
            f"| {r['style']} | {r['no_edit']:.2f} | {r['preset']:.2f} | {r['base']:.2f} | {r['personal']:.2f} | "
            f"{r['optimum']:.2f} | {_pct(r['gap_closed'])} | {'yes' if r['beats_preset'] else 'no'} | "
            f"{'-' if margin is None else f'{margin:+.2f}'} ({r.get('wrong_editor_best_other', '-')}) | "
            f"{'-' if limit is None else f'{limit:+.2f}'} | "
            f"{r['finetune_seconds']:.1f} | {r['pairs']} ({r['distinct_photos']}) |"
        )
    gaps = [r["gap_closed"] for r in rows]
    out.append(f"\nmean gap closed {_pct(np.mean(gaps))}, worst {_pct(min(gaps))} ({len(rows)} styles)")
    if len(plan["seeds"]) > 1:
        out += ["", "| style | " + " | ".join(f"seed {s}" for s in plan["seeds"]) + " | spread |", "|---|"
                + "---|" * (len(plan["seeds"]) + 1)]  # fmt: skip
        for r in rows:
            cells = " | ".join(_pct(r["seeds"][str(s)]["gap_closed"]) for s in plan["seeds"])
            out.append(f"| {r['style']} | {cells} | {100 * r['seed_spread']:.1f} points |")
    if plan["pairs_curve"]:
        ns = plan["pairs_curve"]
        out += ["", f"pairs curve (gap closed at {plan['seconds']:g} s)", ""]
        out += ["| style | " + " | ".join(f"{n} pairs" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for r in rows:
            cells = " | ".join(
                f"{_pct(r['pairs_curve'][str(n)]['gap_closed'])} ({r['pairs_curve'][str(n)]['distinct_photos']})"
                for n in ns
            )
            out.append(f"| {r['style']} | {cells} |")
    if plan["budget_curve"]:
        keys = [f"{s:g}" for s in plan["budget_curve"]]
        out += ["", f"budget curve (gap closed, {MAIN_PAIRS} pairs; 0 s = the instant model, no RL)", ""]
        out += ["| style | " + " | ".join(f"{k} s" for k in keys) + " |", "|---|" + "---|" * len(keys)]
        for r in rows:
            out.append(
                f"| {r['style']} | "
                + " | ".join(_pct(r["budget_curve"][k]["gap_closed"]) for k in keys)
                + " |"
            )
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, plan = result["rows"], result["plan"]
    fig, (ax_pairs, ax_budget) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        if plan["pairs_curve"]:
            ns = plan["pairs_curve"]
            ax_pairs.plot(
                ns, [100 * r["pairs_curve"][str(n)]["gap_closed"] for n in ns], marker="o", label=r["style"]
            )
        keys = [f"{s:g}" for s in plan["budget_curve"]]
        ax_budget.plot(
            [float(k) for k in keys], [100 * r["budget_curve"][k]["gap_closed"] for k in keys], marker="o"
        )
    ax_pairs.set(
        xscale="log", xlabel="training pairs", ylabel="gap closed (%)", title=f"pairs ({plan['seconds']:g} s)"
    )
    ax_budget.set(
        xscale="symlog",
        xlabel="fine-tuning seconds",
        ylabel="gap closed (%)",
        title=f"budget ({MAIN_PAIRS} pairs)",
    )
    for ax in (ax_pairs, ax_budget):
        ax.grid(alpha=0.3)
        ax.axhline(90, color="grey", lw=0.8, ls="--")
    fig.legend(loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def runnable(wanted: list[str]) -> list[str]:
    """The styles that can be made here; each other one is named on stderr with the reason."""
    styles = []
    for style in wanted:
        why = bench_pairs.missing(style)
        if why:
            print(f"SKIPPED style {style}: {why}", file=sys.stderr)
        else:
            styles.append(style)
    return styles


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the day-to-day mode: 30 s, one seed, no curves")
    p.add_argument(
        "--main-only", action="store_true", help="the full mode's main column only (60 s, 50 pairs, one seed)"
    )
    p.add_argument(
        "--pairs-curve",
        help="pair counts for the pairs curve, e.g. 10 (comma-separated; replaces the mode's)",
    )
    p.add_argument(
        "--budget-curve",
        help="budgets in s for the budget curve, e.g. 0 (comma-separated; replaces the mode's)",
    )
    p.add_argument("--styles", default="all", help="comma-separated style names or 'all'")
    p.add_argument("--seconds", type=float, help="the main column's fine-tuning budget (default: the mode's)")
    p.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="processes")
    p.add_argument("--seed", type=int, default=0, help="CMA-ES seed")
    p.add_argument(
        "--data-seed", type=int, default=DATA_SEED,
        help="another draw of the pairs (crops, camera errors; the held-out pairs' seed is this + 1000)",
    )  # fmt: skip
    p.add_argument("--base", default=str(BASE_MODEL_PATH))
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fine-tuning Config field, e.g. --config aug_target=unchanged (repeatable)")  # fmt: skip
    p.add_argument(
        "--efficiency", action="store_true", help="also measure actor-sampled vs uniform exploration"
    )
    p.add_argument("--efficiency-steps", type=int, default=600)
    p.add_argument("--out", default="var/bench_quality.json")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.main_only:
        plan = Plan(**{**asdict(FULL), "pairs_curve": (), "budget_curve": (), "seeds": (0,)})
    if args.pairs_curve or args.budget_curve:
        plan = Plan(
            **{
                **asdict(plan),
                "pairs_curve": tuple(int(n) for n in (args.pairs_curve or "").split(",") if n),
                "budget_curve": tuple(float(s) for s in (args.budget_curve or "").split(",") if s),
            }
        )
    if args.seconds is not None:
        plan = Plan(**{**asdict(plan), "seconds": args.seconds})
    plan = Plan(**{**asdict(plan), "data_seed": args.data_seed})
    config(args.config)  # refuse unknown --config fields before any work
    wanted = list(bench_pairs.STYLES) if args.styles == "all" else args.styles.split(",")
    styles = runnable(wanted)
    if not styles:
        p.error("no style can be run here")
    photos.fetch()
    result = run_benchmark(styles, plan, args)
    result["skipped"] = [s for s in wanted if s not in styles]
    command = ".venv/bin/python bench/bench_quality.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    result["command"] = command
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(result, indent=1, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x))
    )
    if plan.pairs_curve or plan.budget_curve:
        plot(result, out.with_suffix(".png"))
        print(f"plot: {out.with_suffix('.png')}")
    print(tables(result))
    for r in result["rows"]:
        if "efficiency" in r:
            print(f"\nsample efficiency ({r['style']}): {json.dumps(r['efficiency'], default=str)}")
    if result["skipped"]:
        print(f"\nskipped (see messages above): {', '.join(result['skipped'])}")
    print(f"\n{result['wall_seconds']:.0f} s wall clock, {args.jobs} processes, {os.cpu_count()} cores")
    print(machine.summary(result["machine"]))
    print(f"command: {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
