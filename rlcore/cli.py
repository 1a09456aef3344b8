"""Command line: python -m rlcore {train-base, choose-default, fit-linear-prior, fit-inverse, finetune, predict, apply,
evaluate}.

A stable contract (outside evaluations drive it exactly as documented in the README): results on stdout
(JSON), progress bars and warnings on stderr, errors as one line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rlcore.malloc import keep_freed_memory

EXIT_ERROR = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _progress_bar(total_label: str):
    """An on_progress callback drawing a tqdm bar on stderr (fraction of the budget)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, desc=total_label, unit="‰", dynamic_ncols=True, mininterval=0.5)
    state = {"n": 0}

    def on_progress(p) -> None:
        n = int(round(p.fraction * 1000))
        if n > state["n"]:
            bar.update(n - state["n"])
            state["n"] = n
        val = "-" if p.val_delta_e != p.val_delta_e else f"{p.val_delta_e:.3f}"
        eta = "-" if p.eta_seconds != p.eta_seconds else f"{p.eta_seconds:.0f}s"  # nan: not known yet
        if p.reward != p.reward:  # nan: no environment step yet (the instant model, the prior's data)
            bar.set_postfix_str(f"before RL, eta={eta}", refresh=False)
        else:
            bar.set_postfix_str(
                f"step={p.step} eps={p.epsilon:.3f} reward={p.reward:+.3f} valdE00={val} eta={eta}",
                refresh=False,
            )

    return bar, on_progress


def _save(model, out: str) -> int:
    from rlcore.modelfile import save_model

    return save_model(model, out)


def _train_and_save(label: str, train, out: str, data, **kwargs) -> int:
    """Run train_base or finetune with a progress bar on stderr, save the model, print a JSON summary."""
    bar, on_progress = _progress_bar(label)
    try:
        result = train(data, on_progress=on_progress, **kwargs)
    finally:
        bar.close()
    size = _save(result.model, out)
    summary = {"out": out, "bytes": size, "model_id": result.model.metadata["model_id"], **result.metrics}
    print(json.dumps(summary))
    return 0


def cmd_train_base(args) -> int:
    from rlcore.agent import train_base
    from rlcore.data import load_images
    from rlcore.prior import PriorConfig, train_prior

    images = load_images(args.images)
    if args.method == "plain":
        if args.styles is not None or args.threads is not None:
            raise CLIError("--styles and --threads are options of --method prior")
        return _train_and_save(
            "train-base", train_base, args.out, images, seconds=args.seconds, seed=args.seed,
            source=str(args.images),
        )  # fmt: skip
    config = PriorConfig.for_budget(args.seconds)
    if args.styles is not None:  # validation styles in the same proportion as for_budget's (<= 96)
        config.n_styles = args.styles
        config.val_styles = min(PriorConfig.val_styles, max(8, args.styles // 16))
    if args.threads is not None:
        config.threads = args.threads
    return _train_and_save(
        "train-base", train_prior, args.out, images, seconds=args.seconds, seed=args.seed, config=config,
        source=str(args.images),
    )  # fmt: skip


def cmd_choose_default(args) -> int:
    from rlcore.data import load_images
    from rlcore.modelfile import load_model
    from rlcore.prior import rechoose_default

    before = load_model(args.model)
    model = rechoose_default(before, load_images(args.images))
    size = _save(model, args.out)
    metrics = model.metadata["metrics"]
    print(json.dumps({"out": args.out, "bytes": size, "model_id": model.metadata["model_id"],
                      "was": before.metadata.get("model_id"), "strength": model.strength,
                      "was_strength": before.strength, "default_untouched": metrics["default_untouched"],
                      "default_share_closer": metrics["default_share_closer"]}))  # fmt: skip
    return 0


def cmd_fit_inverse(args) -> int:
    from tqdm import tqdm

    from rlcore.data import load_images
    from rlcore.inverse import InverseConfig, with_inverse
    from rlcore.modelfile import load_model

    before = load_model(args.model)  # with_inverse refuses a personal model (a ValueError: one line, exit 1)
    config = InverseConfig()
    if args.examples is not None:
        config.examples = args.examples
    bar = tqdm(total=1000, file=sys.stderr, desc="fit-inverse", unit="‰", dynamic_ncols=True, mininterval=0.5)

    def on_progress(fraction: float) -> None:
        bar.update(int(round(fraction * 1000)) - bar.n)

    try:
        model = with_inverse(before, load_images(args.images), config, args.seed, on_progress)
    finally:
        bar.close()
    size = _save(model, args.out)
    print(json.dumps({"out": args.out, "bytes": size, "model_id": model.metadata["model_id"],
                      "was": before.metadata.get("model_id"), **model.metadata["inverse"]["metrics"]}))  # fmt: skip
    return 0


def cmd_fit_linear_prior(args) -> int:
    from tqdm import tqdm

    from rlcore.data import load_images
    from rlcore.modelfile import load_model
    from rlcore.prior import refit_linear_prior

    before = load_model(args.model)
    if before.encoder is None:
        raise CLIError(f"{args.model} is not a style prior (kind 'prior'): it has no encoder")
    bar = tqdm(file=sys.stderr, desc="fit-linear-prior", unit="chunk", dynamic_ncols=True, mininterval=0.5)

    def on_chunk(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        model = refit_linear_prior(before, load_images(args.images), args.seed, on_chunk)
    finally:
        bar.close()
    size = _save(model, args.out)
    print(json.dumps({"out": args.out, "bytes": size, "model_id": model.metadata["model_id"],
                      "was": before.metadata.get("model_id")}))  # fmt: skip
    return 0


def cmd_finetune(args) -> int:
    from rlcore.agent import finetune
    from rlcore.data import load_pairs_dir
    from rlcore.modelfile import BASE_MODEL_PATH, load_model

    if args.face_weight < 0:
        raise CLIError("--face-weight must be >= 0")
    if args.seconds < 0:
        raise CLIError("--seconds must be >= 0 (0: the instant model, no RL)")
    base = load_model(args.base or BASE_MODEL_PATH)
    pairs = load_pairs_dir(args.pairs, face_weight=args.face_weight)
    return _train_and_save(
        "finetune", finetune, args.out, pairs,
        base=base, seconds=args.seconds, seed=args.seed, face_weight=args.face_weight,
    )  # fmt: skip


def cmd_predict(args) -> int:
    from rlcore.imageio import load_image
    from rlcore.modelfile import load_model

    model = load_model(args.model)
    failed = 0
    for image in args.images:
        try:
            img = load_image(image)
        except Exception as exc:
            print(f"error: cannot read {image}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({"image": image, "adjustments": model.predict(img)}), flush=True)
    if failed:
        raise CLIError(f"{failed} of {len(args.images)} image(s) could not be read")
    return 0


def _parse_adjustments(text: str) -> dict:
    candidate = Path(text)
    source = text
    try:
        if not text.lstrip().startswith("{") and candidate.is_file():
            source = candidate.read_text()
    except OSError:
        pass
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise CLIError(
            f"--adjustments is neither a JSON object nor a readable JSON file ({exc.msg})"
        ) from None
    if isinstance(value, dict) and isinstance(value.get("adjustments"), dict):
        value = value["adjustments"]  # accept predict's output line as is
    if not isinstance(value, dict):
        raise CLIError("--adjustments must be a JSON object {name: value}")
    return value


def cmd_apply(args) -> int:
    from rlcore import editor, imageio

    adjustments = _parse_adjustments(args.adjustments)
    try:
        editor.sliders_from_dict(adjustments)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    fmt = imageio.edit_file(args.image, args.out, adjustments)  # full resolution, 16-bit and metadata kept
    print(json.dumps({"image": args.image, "out": args.out, "format": fmt, "adjustments": adjustments}))
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np
    import torch

    from rlcore import editor, reward
    from rlcore.data import load_pairs_dir
    from rlcore.modelfile import load_model

    model = load_model(args.model)
    pairs = load_pairs_dir(args.pairs)
    sliders = model.predict_thumbnails(pairs.before)
    b, t = torch.from_numpy(pairs.before), torch.from_numpy(pairs.after)
    t_lab = reward.srgb_to_lab(t)
    no_edit = reward.mean_delta_e(b, t_lab).numpy()
    edited = reward.mean_delta_e(editor.apply_batch(b, torch.from_numpy(sliders)), t_lab).numpy()
    per_pair = [
        {"name": n, "delta_e_no_edit": round(float(x), 4), "delta_e_model": round(float(y), 4)}
        for n, x, y in zip(pairs.names, no_edit, edited, strict=True)
    ]
    print(
        json.dumps(
            {
                "model": args.model,
                "pairs": len(per_pair),
                "delta_e_no_edit": round(float(np.mean(no_edit)), 4),
                "delta_e_model": round(float(np.mean(edited)), 4),
                "resolution": "64x64 thumbnails",
                "per_pair": per_pair,
            }
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rlcore", description="Learn and apply personal editing styles."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "train-base",
        help="train the base model from a folder of photos (a style prior, or distort-and-recover)",
    )
    s.add_argument("--images", required=True, help="folder of photos (searched recursively)")
    s.add_argument(
        "--method",
        choices=("prior", "plain"),
        default="prior",
        help="prior: a style prior across generated styles (rlcore.prior; default, as shipped); plain: a "
        "distort-and-recover enhancer (the base shipped until 2026-11-26)",
    )
    s.add_argument("--out", required=True, help="model file to write")
    s.add_argument(
        "--seconds",
        type=float,
        default=300.0,
        help="time budget of the training (default 300); building the styles' data and the linear prior's "
        "search come on top (about a third more at small budgets, ~15 minutes at 3000: rlcore/assets/BASE_MODEL.md)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--styles",
        type=int,
        help="prior: generated training styles (default: one per 2 s of budget, <= 2400)",
    )
    s.add_argument("--threads", type=int, help="prior: CPU threads for torch (default 1)")
    s.set_defaults(func=cmd_train_base)

    s = sub.add_parser(
        "choose-default",
        help="a style prior's default for editors without a personal model, chosen again (same networks)",
    )
    s.add_argument("--model", required=True, help="the style prior (kind 'prior')")
    s.add_argument("--images", required=True, help="the folder of photos it was trained with")
    s.add_argument("--out", required=True, help="model file to write")
    s.set_defaults(func=cmd_choose_default)

    s = sub.add_parser(
        "fit-linear-prior",
        help="a style prior's linear style prior (what distillation shrinks towards) fitted again (same networks)",
    )
    s.add_argument("--model", required=True, help="the style prior (kind 'prior')")
    s.add_argument("--images", required=True, help="a folder of photos for the generated styles to edit")
    s.add_argument("--out", required=True, help="model file to write")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_fit_linear_prior)

    s = sub.add_parser(
        "fit-inverse",
        help="a base model's inverse of the editor (where fine-tuning's searches start) trained again (same networks)",
    )
    s.add_argument("--model", required=True, help="the base model (kind 'prior' or 'base')")
    s.add_argument("--images", required=True, help="a folder of photos to edit at random (the base's own)")
    s.add_argument("--out", required=True, help="model file to write")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--examples", type=int, help="random edits to train on (default 240,000: about 5 minutes)")
    s.set_defaults(func=cmd_fit_inverse)

    s = sub.add_parser("finetune", help="learn one editor's style from a pairs directory")
    s.add_argument("--pairs", required=True, help="directory with before/ and after/ (and optional masks/)")
    s.add_argument("--out", required=True, help="model file to write")
    s.add_argument("--base", default=None, help="base model (default: the shipped rlcore/assets/base.pt)")
    s.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--face-weight", type=float, default=0.0, help="extra reward weight of faces (default 0: off)"
    )
    s.set_defaults(func=cmd_finetune)

    s = sub.add_parser("predict", help="print slider values for photos, one JSON object per line")
    s.add_argument("--model", required=True)
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("apply", help="apply slider values to a photo")
    s.add_argument("--adjustments", required=True, help="JSON object {name: value} or a file holding one")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("evaluate", help="mean dE00 of a model's edits on a pairs directory")
    s.add_argument("--model", required=True)
    s.add_argument("--pairs", required=True)
    s.set_defaults(func=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # rlcore/malloc.py: the searches' and training's buffers reused, not faulted in
    t = time.monotonic()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # one line, no traceback: the CLI is a contract
        from rlcore.data import DataError
        from rlcore.modelfile import ModelFormatError

        known = isinstance(
            exc, CLIError | ModelFormatError | DataError | FileNotFoundError | ValueError | OSError
        )
        msg = str(exc).replace("\n", " ").strip() or type(exc).__name__
        print(f"error: {msg}" if known else f"error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        _ = t
