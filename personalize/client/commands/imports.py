"""`import` and `import-status`: a zip of before/ and after/ folders, imported by the server in the background.

The zip is sent with a progress bar of its bytes; the server checks it and answers at once with the import,
which a worker then works through one pair at a time. The command follows it with a second bar (pairs
done of the total, and the server's estimate of the time left) and lists every pair it skipped and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from personalize.client.api import Client
from personalize.client.common import EXIT_FAILED, EXIT_OK, PROG, UsageError, err, fmt_seconds, follow
from personalize.client.config import Settings

FINAL_STATUSES = frozenset({"succeeded", "failed"})


def import_line(row: dict) -> str:
    line = f"import {row.get('id')}: {row.get('status')}, {row.get('done', 0)} of {row.get('total', 0)} pairs"
    if row.get("eta_seconds") is not None:
        line += f", ETA {fmt_seconds(row['eta_seconds'])}"
    return line


def wait_for_import(client: Client, row: dict, poll: float) -> dict:
    """Poll until the import is final, with a bar of pairs done and the ETA; returns the final import."""
    bar = tqdm(
        total=row.get("total") or 0,
        desc=f"import {row['id']}",
        unit="pair",
        file=sys.stderr,
        disable=None,
        bar_format="{desc}: {n_fmt}/{total_fmt} pairs|{bar}| {postfix[0]}",
        postfix=[""],
    )

    def draw(current: dict) -> None:
        status = str(current.get("status"))
        if current.get("eta_seconds") is not None:
            status += f", ETA {fmt_seconds(current['eta_seconds'])}"
        bar.n = current.get("done") or 0
        bar.postfix[0] = status

    def final(current: dict) -> bool:
        return current.get("status") in FINAL_STATUSES

    return follow(row, lambda: client.get_import(row["id"]), final, poll, bar, import_line, draw)


def report_final_import(row: dict) -> int:
    """Every skipped pair with its reason on stderr, a summary on stdout; exit 1 when any was refused."""
    skipped = row.get("skipped") or []
    duplicates = [item for item in skipped if item.get("pair") is not None]
    refused = [item for item in skipped if item.get("pair") is None]
    for item in refused:
        err(f"skipped: {item.get('name')}: {item.get('reason')}")
    print(
        f"imported {len(row.get('stored') or [])}, skipped {len(duplicates)} already uploaded, "
        f"refused {len(refused)}"
    )
    if row.get("status") == "failed":
        err(
            f"error: import {row['id']} stopped after {row.get('done')} of {row.get('total')} pairs: {row.get('error')}"
        )
        return EXIT_FAILED
    return EXIT_FAILED if refused else EXIT_OK


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    archive = Path(args.zip_file).expanduser()
    if not archive.is_file():
        raise UsageError(f"file not found: {args.zip_file}")
    client = settings.client()
    tags = sorted({tag.strip() for raw in args.tag or [] for tag in raw.split(",") if tag.strip()})
    size = archive.stat().st_size
    bar = tqdm(total=size, desc="sending", unit="B", unit_scale=True, file=sys.stderr, disable=None)
    try:
        row = client.start_import(archive, tags, on_progress=lambda sent: bar.update(min(sent, size) - bar.n))
    finally:
        bar.close()
    err(f"import {row['id']}: {row.get('total', 0)} pair(s) to import from {archive.name}")
    if args.no_wait:
        print(row["id"])
        err(f"follow it with `{PROG} import-status {row['id']} --wait`")
        return EXIT_OK
    return report_final_import(wait_for_import(client, row, args.poll))


def cmd_import_status(args: argparse.Namespace, settings: Settings) -> int:
    client = settings.client()
    row = client.get_import(args.import_id) if args.import_id is not None else client.latest_import()
    if row is None:
        print(f"no imports yet; send a zip with `{PROG} import ZIP_FILE`")
        return EXIT_OK
    if args.wait:
        row = wait_for_import(client, row, args.poll)
    if args.json:
        print(json.dumps(row, indent=2))
        return EXIT_OK
    if row.get("status") in FINAL_STATUSES:
        return report_final_import(row)
    print(import_line(row))
    return EXIT_OK
