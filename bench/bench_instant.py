"""How long the instant model (``finetune(seconds=0)``) takes, step by step, and how often it reports.

The instant model is every job's first answer and all of a ``seconds: 0`` job. Its searches and fits
take tens of seconds with many pairs, and a worker's heartbeat rides on its ``should_stop`` polls: a job
silent for JOB_LEASE_SECONDS (30 s) is taken for dead. For each pair count this prints the wall clock
(one torch thread, as a worker trains), the seconds each of its steps took (read from its progress
reports: each step's end is reported at its share of ``rlcore.agent.instant_step_seconds``' estimate,
printed beside it), the ETA first reported and the one reported when the searches of the befores end
(against the seconds that were in fact left), the number of ``should_stop`` polls and the longest gap
between two of them. Run it on an idle machine.

Run: .venv/bin/python bench/bench_instant.py [--pairs 10,50,200] [--style warm_film] [--data-seed 0] [--base FILE]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402
from bench import pairs as bench_pairs  # noqa: E402
from rlcore.agent import Config, finetune, instant_step_seconds  # noqa: E402
from rlcore.data import PairSet  # noqa: E402
from rlcore.malloc import keep_freed_memory  # noqa: E402
from rlcore.modelfile import BASE_MODEL_PATH, load_model  # noqa: E402


def time_instant(pairs: PairSet, base) -> dict:
    polls: list[float] = []
    reports: list[tuple[float, float, float]] = []  # (seconds since the start, fraction, ETA)
    started = time.monotonic()
    result = finetune(
        pairs,
        base=base,
        seconds=0,
        seed=0,
        should_stop=lambda: polls.append(time.monotonic()) and False,
        on_progress=lambda p: reports.append((time.monotonic() - started, p.fraction, p.eta_seconds)),
    )
    wall = time.monotonic() - started
    stamps = [started, *polls, started + wall]
    estimate = instant_step_seconds(
        Config(), len(pairs), base.linear_prior is not None, base.inverse is not None
    )
    total = sum(estimate.values())
    step_ends = {}
    for step, end in zip(estimate, itertools.accumulate(estimate.values()), strict=True):
        step_ends[step] = next((t for t, f, _ in reports if f >= end / total - 1e-6), float("nan"))
    starts = [0.0, *step_ends.values()][:-1]
    first_eta = reports[0][2]
    search_end = next(i for i, (t, _, _) in enumerate(reports) if t >= step_ends["search"])
    return {
        "seconds": wall,
        "steps": {step: end - start for (step, end), start in zip(step_ends.items(), starts, strict=True)},
        "estimate": estimate,
        "first_eta": first_eta,
        "eta_after_search": (reports[search_end][2], wall - reports[search_end][0]),
        "polls": len(polls),
        "longest_gap": max(b - a for a, b in itertools.pairwise(stamps)),
        "val_delta_e": result.metrics["val_delta_e_personal"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="10,50,200", help="pair counts, comma-separated")
    parser.add_argument("--style", default="warm_film", choices=bench_pairs.STYLES)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--base", default=str(BASE_MODEL_PATH), help="base model (default: the shipped one)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as a worker runs (rlcore/malloc.py)
    torch.set_num_threads(1)
    base = load_model(args.base)
    counts = [int(n) for n in args.pairs.split(",")]
    print(f"the instant model on {args.style}'s pairs (bench/pairs.py, train photos), one torch thread")
    steps = list(instant_step_seconds(Config(), 10, True, True))
    print("each step: measured seconds (estimated); ETAs: reported / seconds in fact left")
    print(
        "| pairs | seconds | "
        + " | ".join(steps)
        + " | first ETA | ETA after the search | polls | longest gap | val dE00 |"
    )
    print("|---" * (len(steps) + 7) + "|")
    for n in counts:
        made = bench_pairs.make(args.style, "train", n, args.data_seed)
        pairs = PairSet(made.before, made.after)
        finetune(PairSet(made.before[:4], made.after[:4]), base=base, seconds=0, seed=0)  # imports, caches
        r = time_instant(pairs, base)
        cells = " | ".join(f"{r['steps'][s]:.1f} ({r['estimate'][s]:.1f})" for s in steps)
        eta, left = r["eta_after_search"]
        print(f"| {n} | {r['seconds']:.1f} | {cells} | {r['first_eta']:.1f} / {r['seconds']:.1f} | "
              f"{eta:.1f} / {left:.1f} | {r['polls']} | {r['longest_gap']:.1f} s | {r['val_delta_e']:.3f} |")  # fmt: skip
    print(machine.summary())
    print("command: .venv/bin/python bench/bench_instant.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
