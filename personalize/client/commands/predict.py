"""`predict`: sliders for photos, printed, as XMP sidecars (a whole shoot through batches) or rendered."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from personalize.client import shoot
from personalize.client.api import ApiError, AuthError, Unreachable
from personalize.client.common import EXIT_FAILED, EXIT_OK, UsageError, err, fmt_size, write_atomically
from personalize.client.config import Settings
from personalize.client.folders import expand_images


def output_folder(raw: str | None) -> Path | None:
    """The folder an option names, created if missing (None when the option was not given)."""
    if not raw:
        return None
    folder = Path(raw).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"not a folder: {raw}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def render_name(image: Path, used: set[str]) -> str:
    name = f"{image.stem}.jpg"
    if name.lower() in used:
        name = f"{image.stem}_{image.suffix.lstrip('.').lower()}.jpg"
    used.add(name.lower())
    return name


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 <= args.strength <= 2:
        raise UsageError("--strength must be between 0 and 2")
    if args.out and not args.xmp:
        raise UsageError("--out is where --xmp writes sidecars: pass --xmp too")
    images = expand_images(args.images, raw=args.xmp and not args.render)
    if args.xmp and not args.render:
        return predict_shoot(args, settings, images)
    out_dir = output_folder(args.render)
    sidecar_dir = output_folder(args.out)
    client = settings.client()
    failures = 0
    rendered_names: set[str] = set()
    for image in images:
        try:
            result = client.predict(image, strength=args.strength)
            adjustments = result.get("adjustments") or {}
            model = result.get("model") or {}
            record = {"image": str(image), "adjustments": adjustments, "model": model}
            if args.xmp:
                sidecar = (sidecar_dir or image.parent) / f"{image.stem}.xmp"
                if sidecar.exists() and not args.overwrite:
                    raise FileExistsError(f"{sidecar} exists (pass --overwrite to replace it)")
                write_atomically(sidecar, client.predict_xmp(image, strength=args.strength))
                record["xmp"] = str(sidecar)
            if out_dir is not None:
                # The sliders just printed, already scaled by --strength: render them at strength 1.
                jpeg = client.render(image, adjustments=adjustments, strength=1.0, max_size=args.max_size)
                target = out_dir / render_name(image, rendered_names)
                target.write_bytes(jpeg)
                record["render"] = str(target)
        except (AuthError, Unreachable):
            raise
        except ApiError as exc:
            failures += 1
            err(f"error: {image}: {exc.detail}")
            continue
        except OSError as exc:
            failures += 1
            err(f"error: {image}: {exc}")
            continue
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            kind = model.get("kind", "?")
            print(
                f"{image.name}  ({kind} model{' v' + str(model['version']) if model.get('version') else ''})"
            )
            for name, value in adjustments.items():
                print(f"  {name:<18}{value:+d}" if isinstance(value, int) else f"  {name:<18}{value}")
            for key, label in (("xmp", "sidecar"), ("render", "rendered")):
                if key in record:
                    print(f"  {label}: {record[key]}")
            sys.stdout.flush()
    if failures:
        err(f"{failures} of {len(images)} photo(s) failed")
        return EXIT_FAILED
    return EXIT_OK


def predict_shoot(args: argparse.Namespace, settings: Settings, images: list[Path]) -> int:
    """--xmp without --render: previews decoded here, sent in batches, sidecars written (shoot.py)."""
    out_dir = output_folder(args.out)
    client = settings.client()
    started = time.perf_counter()
    limits = client.batch_limits()
    todo, skipped = shoot.plan(images, out_dir, args.overwrite, limits.get("model") or {}, args.strength)
    err(
        f"{len(images)} photo(s): {len(todo)} to predict with the {shoot.model_label(limits.get('model') or {})} "
        f"model, {len(skipped)} skipped; decoding on {args.jobs} core(s)"
    )
    bar = tqdm(total=len(todo), desc="sidecars", unit="photo", file=sys.stderr, disable=None, leave=True)

    def on_photo(photo, record, error) -> None:
        if record and args.json:
            line = {"image": str(photo.path), **record, "xmp": str(photo.sidecar)}
            tqdm.write(json.dumps(line), file=sys.stdout)
        bar.update(1)

    try:
        outcome = shoot.run(
            client, todo, strength=args.strength, limits=limits, jobs=args.jobs, on_photo=on_photo
        )
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    skipped += outcome.skipped
    for path, reason in skipped:
        if reason != "up to date":
            err(f"skipped: {path}: {reason}")
    for path, reason in outcome.failed:
        err(f"failed: {path}: {reason}")
    stats = outcome.stats
    done = len(outcome.done)
    up_to_date = sum(1 for _, reason in skipped if reason == "up to date")
    print(
        f"done {done}, skipped {len(skipped)} ({up_to_date} up to date), failed {len(outcome.failed)} "
        f"in {elapsed:.1f} s" + (f" ({done / elapsed:.1f} photos/s)" if done else "")
    )
    if done:
        print(
            f"sent {fmt_size(stats.bytes_sent)} ({fmt_size(stats.bytes_sent / done)} per photo) in "
            f"{stats.requests} request(s); decoding {stats.decode_cpu_s:.1f} s of CPU, requests "
            f"{stats.request_s:.1f} s (summed round trips); model: {', '.join(sorted(outcome.models))}"
        )
    if len(outcome.models) > 1:
        err("note: the active model changed during the run; each sidecar records the model that made it")
    return EXIT_FAILED if outcome.failed else EXIT_OK
