"""`upload`: before/after folders matched by name, pairs sent in parallel, what the server has skipped."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from personalize.client.api import ApiError, AuthError, Unreachable, content_hash
from personalize.client.common import EXIT_FAILED, EXIT_OK, UsageError, err
from personalize.client.config import Settings
from personalize.client.conventions import PHOTO_SUFFIXES
from personalize.client.folders import PairFiles, match_folders, require_folder


def alignment_text(pair: dict) -> str | None:
    """'aligned: cropped 18 %, rotated 1.2°' for a pair whose after is a crop or a straightened frame of
    its before (the server found where; docs/pairs.md), None when the after is the whole before."""
    alignment = pair.get("alignment") or {}
    if alignment.get("identity", True):
        return None
    parts = []
    before_w, before_h = pair.get("before_size") or (0, 0)
    crop = alignment.get("crop") or []
    if before_w and before_h and len(crop) == 4:
        cropped = 1.0 - crop[2] * crop[3] / (before_w * before_h)
        if cropped >= 0.005:
            parts.append(f"cropped {cropped * 100:.0f} %")
    rotation = alignment.get("rotation_deg") or 0.0
    if abs(rotation) >= 0.05:
        parts.append(f"rotated {rotation:.1f}°")
    return "aligned: " + (", ".join(parts) or "shifted")


def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    before_dir = require_folder(args.before_dir)
    after_dir = require_folder(args.after_dir)
    mask_dir = require_folder(args.masks) if args.masks else None
    client = settings.client()
    tags = sorted({tag.strip() for raw in args.tag or [] for tag in raw.split(",") if tag.strip()})

    pairs = match_folders(before_dir, after_dir, mask_dir)
    if not pairs:
        raise UsageError(
            f"no before/after pairs: files in {before_dir} and {after_dir} are matched by name "
            f"(case-insensitive; {', '.join(sorted(PHOTO_SUFFIXES))})"
        )
    err(f"{len(pairs)} pair(s) matched")
    if args.dry_run:
        for pair in pairs:
            print(
                f"{pair.before.name}  ->  {pair.after.name}"
                + (f"  (mask {pair.mask.name})" if pair.mask else "")
            )
        return EXIT_OK

    uploaded: list[dict] = []
    skipped: list[PairFiles] = []
    failed: list[tuple[PairFiles, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # Hash every pair first, so that identical pairs within the folders are uploaded once.
        for pair, digest in zip(
            pairs, pool.map(lambda p: content_hash(p.before, p.after), pairs), strict=True
        ):
            pair.digest = digest
        seen: set[str] = set()
        todo = []
        for pair in pairs:
            if pair.digest in seen:
                skipped.append(pair)
            else:
                seen.add(pair.digest)
                todo.append(pair)

        def send(pair: PairFiles) -> dict | None:
            """The new pair, or None when the server already has one with the same content hash."""
            if client.find_pair(pair.digest) is not None:
                return None
            return client.upload_pair(pair.before, pair.after, mask=pair.mask, name=pair.name, tags=tags)

        futures = {pool.submit(send, pair): pair for pair in todo}
        bar = tqdm(total=len(todo), desc="uploading", unit="pair", file=sys.stderr, disable=None, leave=True)
        try:
            for future in as_completed(futures):
                pair = futures[future]
                try:
                    outcome = future.result()
                except (AuthError, Unreachable):
                    raise
                except ApiError as exc:
                    failed.append((pair, exc.detail))
                    tqdm.write(
                        f"failed: {pair.before.name} + {pair.after.name}: {exc.detail}", file=sys.stderr
                    )
                except OSError as exc:
                    failed.append((pair, exc.strerror or str(exc)))
                    tqdm.write(f"failed: {pair.before.name}: {exc}", file=sys.stderr)
                else:
                    if outcome is None:
                        skipped.append(pair)
                    else:
                        uploaded.append(outcome)
                        aligned = alignment_text(outcome)
                        if aligned:
                            tqdm.write(f"{pair.before.name} + {pair.after.name}: {aligned}", file=sys.stderr)
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()

    summary = f"uploaded {len(uploaded)}, skipped {len(skipped)} already uploaded"
    aligned = sum(1 for pair in uploaded if alignment_text(pair))
    if aligned:
        summary += f" ({aligned} aligned: cropped or straightened afters)"
    if failed:
        summary += f", failed {len(failed)}"
    print(summary)
    return EXIT_FAILED if failed else EXIT_OK
