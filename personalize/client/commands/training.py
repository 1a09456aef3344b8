"""`train`, `status` and `cancel`: training jobs, followed with a progress bar until they finish."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from personalize.client.api import ApiError, Client
from personalize.client.common import (
    EXIT_FAILED,
    EXIT_OK,
    PROG,
    err,
    fmt_delta_e,
    fmt_seconds,
    follow,
    personal_delta_e,
)
from personalize.client.config import Settings

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def job_line(job: dict) -> str:
    parts = [f"job {job.get('id')}: {job.get('status')}"]
    if job.get("status") == "running":
        parts.append(f"{(job.get('progress') or 0) * 100:.0f}%")
        if job.get("eta_seconds") is not None:
            parts.append(f"ETA {fmt_seconds(job['eta_seconds'])}")
    if job.get("val_delta_e") is not None:
        parts.append(f"val ΔE00 {fmt_delta_e(job['val_delta_e'])}")
    return ", ".join(parts)


def wait_for_job(client: Client, job: dict, poll: float) -> dict:
    """Poll until the job is final, showing a bar with ETA and validation ΔE00; returns the final job."""
    # The status goes in postfix[0]: tqdm puts ", " before a string postfix (made to follow its rate
    # figures), but leaves a list alone.
    bar = tqdm(
        total=100,
        desc=f"job {job['id']}",
        unit="%",
        file=sys.stderr,
        disable=None,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix[0]}",
        postfix=[""],
    )

    def draw(job: dict) -> None:
        postfix = [str(job.get("status"))]
        if job.get("step") is not None:
            postfix.append(f"step {job['step']}")
        if job.get("eta_seconds") is not None and job.get("status") == "running":
            postfix.append(f"ETA {fmt_seconds(job['eta_seconds'])}")
        if job.get("val_delta_e") is not None:
            postfix.append(f"val ΔE00 {fmt_delta_e(job['val_delta_e'])}")
        bar.n = round(max(0.0, min(1.0, float(job.get("progress") or 0))) * 100)
        bar.postfix[0] = ", ".join(postfix)

    def final(current: dict) -> bool:
        return current.get("status") in FINAL_STATUSES

    return follow(job, lambda: client.get_job(job["id"]), final, poll, bar, job_line, draw)


def report_final_job(client: Client, job: dict) -> int:
    status = job.get("status")
    if status == "succeeded":
        metrics = job.get("metrics") or {}
        line = f"job {job['id']} succeeded: model {job.get('model')}"
        personal = personal_delta_e(metrics, job.get("val_delta_e"))
        if personal is not None:
            line += f", validation ΔE00 {fmt_delta_e(personal)}"
            extras = [
                f"{label} {fmt_delta_e(metrics[key])}"
                for key, label in (("val_delta_e_base", "base"), ("val_delta_e_no_edit", "no edit"))
                if isinstance(metrics.get(key), int | float)
            ]
            if extras:
                line += f" ({', '.join(extras)})"
        print(line)
        if job.get("model") is not None:
            model = next((m for m in client.list_models() if m.get("id") == job["model"]), None)
            if model is not None and not model.get("active"):
                err(f"model {job['model']} is not active; activate it with `{PROG} activate {job['model']}`")
        return EXIT_OK
    if status == "failed":
        err(f"error: job {job['id']} failed: {job.get('error') or 'no reason given'}")
    else:
        err(f"error: job {job['id']} was {status}")
    return EXIT_FAILED


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    client = settings.client()
    options = {"seconds": args.seconds, "face_weight": args.face_weight, "seed": args.seed, "tag": args.tag}
    try:
        job = client.create_job(**options)
    except ApiError as exc:
        payload = exc.payload if isinstance(exc.payload, dict) else {}
        if exc.status == 400 and "required" in payload:
            err(
                f"error: training needs at least {payload['required']} pairs"
                f"{' tagged ' + args.tag if args.tag else ''}; you have {payload.get('available', 0)}. "
                f"Upload more with `{PROG} upload BEFORE_DIR AFTER_DIR`"
            )
            return EXIT_FAILED
        if exc.status == 409 and "active_job" in payload:
            err(
                f"error: job {payload['active_job']} is still in progress; follow it with "
                f"`{PROG} status {payload['active_job']} --wait` or stop it with `{PROG} cancel {payload['active_job']}`"
            )
            return EXIT_FAILED
        raise
    err(f"started job {job['id']} ({job.get('status')})")
    if not args.wait:
        print(job["id"])
        err(f"follow it with `{PROG} status {job['id']} --wait`")
        return EXIT_OK
    job = wait_for_job(client, job, args.poll)
    return report_final_job(client, job)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = settings.client()
    if args.job_id is not None:
        job = client.get_job(args.job_id)
    else:
        job = client.latest_job()
        if job is None:
            print(f"no training jobs yet; start one with `{PROG} train`")
            return EXIT_OK
    if args.wait and job.get("status") not in FINAL_STATUSES:
        job = wait_for_job(client, job, args.poll)
        return report_final_job(client, job)
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(job_line(job))
        details = [
            ("progress", f"{(job.get('progress') or 0) * 100:.0f}%"),
            ("step", job.get("step")),
            ("eta", fmt_seconds(job.get("eta_seconds")) if job.get("status") == "running" else None),
            ("validation ΔE00", fmt_delta_e(personal_delta_e(job.get("metrics"), job.get("val_delta_e")))),
            ("model", job.get("model")),
            ("seconds", job.get("seconds")),
            ("tag", job.get("tag")),
            ("created", job.get("created_at")),
            ("started", job.get("started_at")),
            ("finished", job.get("finished_at")),
            ("error", job.get("error")),
        ]
        for label, value in details:
            if value not in (None, "", "-"):
                print(f"  {label:<16}{value}")
    if args.events:
        for event in client.job_events(job["id"]):
            print(f"  {event.get('at', '')}  {event.get('kind', ''):<10} {event.get('message', '')}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    client = settings.client()
    try:
        job = client.cancel_job(args.job_id)
    except ApiError as exc:
        if exc.status == 409:
            err(f"error: {exc.detail}")
            return EXIT_FAILED
        raise
    print(job_line(job))
    return EXIT_OK
