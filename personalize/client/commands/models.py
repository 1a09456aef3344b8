"""`models` and `activate`: the editor's personal models and which one answers predictions."""

from __future__ import annotations

import argparse
import json

from personalize.client.api import ApiError
from personalize.client.common import EXIT_FAILED, EXIT_OK, PROG, err, fmt_delta_e, fmt_size, personal_delta_e
from personalize.client.config import Settings


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    models = settings.client().list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return EXIT_OK
    if not models:
        print(f"no personal models yet (predictions use the base model); train one with `{PROG} train`")
        return EXIT_OK
    print(f"{'ID':>5}  {'VERSION':>7}  {'ACTIVE':<6}  {'VAL ΔE00':>8}  {'SIZE':>9}  CREATED")
    for model in models:
        print(
            f"{model.get('id')!s:>5}  {model.get('version')!s:>7}  {'*' if model.get('active') else '':<6}  "
            f"{fmt_delta_e(personal_delta_e(model.get('metrics'))):>8}  {fmt_size(model.get('size_bytes')):>9}  "
            f"{model.get('created_at') or ''}"
        )
    if not any(model.get("active") for model in models):
        err(f"no model is active (predictions use the base model); `{PROG} activate MODEL_ID` picks one")
    return EXIT_OK


def cmd_activate(args: argparse.Namespace, settings: Settings) -> int:
    client = settings.client()
    try:
        model = client.activate_model(args.model_id)
    except ApiError as exc:
        if exc.status == 404:
            err(f"error: you have no model {args.model_id}; `{PROG} models` lists yours")
            return EXIT_FAILED
        raise
    print(f"model {model.get('id')} (version {model.get('version')}) is now active")
    return EXIT_OK
