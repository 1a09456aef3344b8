"""`personalize-client`: an editor's command line, from an export folder to a personal model and sidecars.

Talks to the service only through its public HTTP API (see api.py); nothing here imports Django.
Results go to stdout, progress and messages to stderr. Exit codes: see the EXIT_* constants.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from personalize.client import shoot
from personalize.client.api import (
    DEFAULT_TIMEOUT,
    ApiError,
    AuthError,
    Client,
    Unreachable,
    content_hash,
    normalize_server,
)
from personalize.client.conventions import PHOTO_SUFFIXES, is_photo, stem_key
from personalize.client.previews import is_raw

PROG = "personalize-client"
DEFAULT_SERVER = "http://127.0.0.1:8000"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed: a job failed or was cancelled, some uploads failed
EXIT_USAGE = 2  # bad arguments or configuration: a missing folder, no token
EXIT_UNREACHABLE = 3  # the server could not be reached
EXIT_AUTH = 4  # the server refused the token or the credentials
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the arguments or the configuration (exit code 2)."""


class LoginFailed(Exception):
    """The server refused a username and password (exit code 4)."""


# --- configuration ----------------------------------------------------------------------------------------


def config_path(explicit: str | None = None) -> Path:
    raw = explicit or os.environ.get("PERSONALIZE_CONFIG")
    if raw:
        return Path(raw).expanduser()
    return Path.home() / ".config" / "personalize" / "config.json"


def read_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read the config file {path} ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the config file {path} is not valid JSON ({exc.msg}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise UsageError(f"the config file {path} should hold a JSON object; fix or delete it")
    return data


def write_config(path: Path, data: dict) -> None:
    """Write the config readable by its owner only: the file 0600, a folder we create 0700."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=folder)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Settings:
    server: str
    token: str | None
    config_file: Path
    config: dict
    timeout: float

    def client(self, need_token: bool = True) -> Client:
        if need_token and not self.token:
            raise UsageError(f"no API token: run `{PROG} login`, or set PERSONALIZE_TOKEN, or pass --token")
        return Client(self.server, self.token if need_token else None, timeout=self.timeout)


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Each setting from the command line, else the environment, else the config file, else the default."""
    path = config_path(args.config)
    config = read_config(path)
    server = args.server or os.environ.get("PERSONALIZE_SERVER") or config.get("server") or DEFAULT_SERVER
    token = args.token or os.environ.get("PERSONALIZE_TOKEN") or config.get("token")
    return Settings(normalize_server(server), token, path, config, args.timeout or DEFAULT_TIMEOUT)


# --- small helpers ----------------------------------------------------------------------------------------


def err(message: str) -> None:
    print(message, file=sys.stderr)


def names_list(paths: Iterable[Path], limit: int = 10) -> str:
    names = sorted(path.name for path in paths)
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def require_folder(raw: str) -> Path:
    folder = Path(raw).expanduser()
    if not folder.exists():
        raise UsageError(f"folder not found: {raw}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {raw}")
    return folder


def supported_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(photos with a supported extension, other files); hidden files are ignored."""
    photos, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (photos if is_photo(path) else others).append(path)
    return photos, others


def by_stem(photos: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    """{lowercased stem: path} and the files whose stem is ambiguous (IMG_1.jpg beside IMG_1.png)."""
    groups: dict[str, list[Path]] = {}
    for path in photos:
        groups.setdefault(stem_key(path), []).append(path)
    unique = {stem: paths[0] for stem, paths in groups.items() if len(paths) == 1}
    ambiguous = [path for paths in groups.values() if len(paths) > 1 for path in paths]
    return unique, ambiguous


def fmt_delta_e(value) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def fmt_seconds(value) -> str:
    if not isinstance(value, int | float) or value < 0:
        return "-"
    value = round(value)
    return (
        f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"
        if value >= 3600
        else f"{value // 60}:{value % 60:02d}"
    )


def fmt_size(size) -> str:
    if not isinstance(size, int | float):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def personal_delta_e(metrics: dict | None, fallback=None):
    metrics = metrics or {}
    for key in ("val_delta_e_personal", "val_delta_e"):
        if isinstance(metrics.get(key), int | float):
            return metrics[key]
    return fallback


# --- login / logout ---------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, settings: Settings) -> int:
    username = args.username
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not username:
            remembered = settings.config.get("username")
            prompt = f"Username [{remembered}]: " if remembered else "Username: "
            print(prompt, end="", file=sys.stderr, flush=True)
            username = sys.stdin.readline().strip() or remembered
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError("a username and a password are needed")
    client = settings.client(need_token=False)
    try:
        token = client.obtain_token(username, password)
    except ApiError as exc:
        if exc.status in (400, 401, 403):
            raise LoginFailed(f"login failed: {exc.detail}") from exc
        raise
    config = {**settings.config, "server": settings.server, "token": token, "username": username}
    write_config(settings.config_file, config)
    err(f"logged in to {settings.server} as {username}; token saved to {settings.config_file}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace, settings: Settings) -> int:
    if "token" in settings.config:
        config = {key: value for key, value in settings.config.items() if key != "token"}
        write_config(settings.config_file, config)
        err(f"token removed from {settings.config_file}")
    else:
        err("no token stored")
    return EXIT_OK


# --- upload -----------------------------------------------------------------------------------------------


@dataclass
class PairFiles:
    name: str
    before: Path
    after: Path
    mask: Path | None = None
    digest: str = ""


def match_folders(before_dir: Path, after_dir: Path, mask_dir: Path | None) -> list[PairFiles]:
    """Pairs matched by stem (case-insensitive, any supported extension); problems are reported."""
    before_photos, before_other = supported_files(before_dir)
    after_photos, after_other = supported_files(after_dir)
    befores, before_ambiguous = by_stem(before_photos)
    afters, after_ambiguous = by_stem(after_photos)
    masks: dict[str, Path] = {}
    if mask_dir is not None:
        masks, _ = by_stem(supported_files(mask_dir)[0])

    stems = sorted(befores.keys() & afters.keys())
    pairs = [PairFiles(befores[s].stem, befores[s], afters[s], masks.get(s)) for s in stems]

    only_before = [befores[s] for s in befores.keys() - afters.keys()]
    only_after = [afters[s] for s in afters.keys() - befores.keys()]
    if only_before:
        err(
            f"{len(only_before)} file(s) in {before_dir} without a match in {after_dir}: {names_list(only_before)}"
        )
    if only_after:
        err(
            f"{len(only_after)} file(s) in {after_dir} without a match in {before_dir}: {names_list(only_after)}"
        )
    for folder, ambiguous in ((before_dir, before_ambiguous), (after_dir, after_ambiguous)):
        if ambiguous:
            err(f"skipped {len(ambiguous)} file(s) in {folder} sharing a name stem: {names_list(ambiguous)}")
    for folder, other in ((before_dir, before_other), (after_dir, after_other)):
        if other:
            err(
                f"ignored {len(other)} file(s) in {folder} with an unsupported extension: {names_list(other, 5)}"
            )
    return pairs


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


# --- training ---------------------------------------------------------------------------------------------


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
    last_status, last_decile, unreachable_since = None, -1, None
    try:
        while True:
            progress = max(0.0, min(1.0, float(job.get("progress") or 0)))
            if bar.disable:  # not a terminal (a log): a line on each status change and every 10%
                decile = int(progress * 10)
                if job.get("status") != last_status or decile > last_decile:
                    err(job_line(job))
                    last_status, last_decile = job.get("status"), decile
            else:
                postfix = [str(job.get("status"))]
                if job.get("step") is not None:
                    postfix.append(f"step {job['step']}")
                if job.get("eta_seconds") is not None and job.get("status") == "running":
                    postfix.append(f"ETA {fmt_seconds(job['eta_seconds'])}")
                if job.get("val_delta_e") is not None:
                    postfix.append(f"val ΔE00 {fmt_delta_e(job['val_delta_e'])}")
                bar.n = round(progress * 100)
                bar.postfix[0] = ", ".join(postfix)
                bar.refresh()
            if job.get("status") in FINAL_STATUSES:
                return job
            time.sleep(poll)
            try:
                job = client.get_job(job["id"])
                unreachable_since = None
            except Unreachable:
                # A restarting server should not end a long wait: retry for a minute.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > 60:
                    raise
    finally:
        bar.close()


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


# --- models -----------------------------------------------------------------------------------------------


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


# --- predict ----------------------------------------------------------------------------------------------


def expand_images(raw_paths: list[str], raw: bool = False) -> list[Path]:
    """Files as given (any extension: the server decides), folders expanded to their supported photos
    (and with raw=True their RAW files, whose embedded previews the client reads)."""
    images: list[Path] = []
    for given in raw_paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise UsageError(f"file not found: {given}")
        if path.is_dir():
            photos, others = supported_files(path)
            images.extend(photos)
            if raw:
                images.extend(other for other in others if is_raw(other))
        else:
            images.append(path)
    if not images:
        raise UsageError("no photos to predict")
    return images


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
    out_dir = None
    if args.render:
        out_dir = Path(args.render).expanduser()
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"not a folder: {args.render}")
        out_dir.mkdir(parents=True, exist_ok=True)
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
                sidecar = image.with_suffix(".xmp")
                if sidecar.exists() and not args.overwrite:
                    raise FileExistsError(f"{sidecar} exists (pass --overwrite to replace it)")
                sidecar.write_text(client.predict_xmp(image, strength=args.strength), encoding="utf-8")
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
    out_dir = None
    if args.out:
        out_dir = Path(args.out).expanduser()
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"not a folder: {args.out}")
        out_dir.mkdir(parents=True, exist_ok=True)
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


# --- the parser -------------------------------------------------------------------------------------------


def add_connection_options(parser: argparse.ArgumentParser, on_subcommand: bool) -> None:
    # On subcommands the defaults are SUPPRESSed, so `--server X upload ...` and `upload ... --server X`
    # both work and neither position overwrites the other with None.
    default = argparse.SUPPRESS if on_subcommand else None
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server", default=default, help=f"service URL (env PERSONALIZE_SERVER; default {DEFAULT_SERVER})"
    )
    group.add_argument(
        "--token", default=default, help="API token (env PERSONALIZE_TOKEN; `login` stores one)"
    )
    group.add_argument(
        "--config",
        default=default,
        help="config file (env PERSONALIZE_CONFIG; default ~/.config/personalize/config.json)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default,
        help=f"seconds per HTTP request (default {DEFAULT_TIMEOUT:.0f})",
    )


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train your personal editing style from before/after exports and apply it to new photos.",
        epilog="Exit codes: 0 ok, 1 operation failed, 2 usage or configuration error, 3 server unreachable, "
        "4 authentication refused.",
    )
    add_connection_options(parser, on_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        add_connection_options(sub, on_subcommand=True)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("login", cmd_login, "log in with your username and password and store the API token")
    sub.add_argument("--username", "-u", help="default: asked for")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")

    command("logout", cmd_logout, "forget the stored API token")

    sub = command("upload", cmd_upload, "upload before/after pairs matched by file name (resumable)")
    sub.add_argument("before_dir", metavar="BEFORE_DIR", help="folder of originals")
    sub.add_argument("after_dir", metavar="AFTER_DIR", help="folder of your finished exports (same names)")
    sub.add_argument(
        "--tag", action="append", help="tag every uploaded pair (repeatable, or comma-separated)"
    )
    sub.add_argument("--masks", metavar="MASK_DIR", help="optional folder of priority masks, matched by name")
    sub.add_argument("--jobs", "-j", type=positive_int, default=4, help="parallel uploads (default 4)")
    sub.add_argument("--dry-run", action="store_true", help="only list the matched pairs")

    sub = command("train", cmd_train, "start training a personal model on your pairs")
    sub.add_argument("--seconds", type=positive_int, help="training budget (default: the server's)")
    sub.add_argument("--face-weight", type=float, help="extra weight on faces (0 to 10)")
    sub.add_argument("--seed", type=int, help="random seed")
    sub.add_argument("--tag", help="train only on pairs with this tag")
    sub.add_argument("--wait", action="store_true", help="show live progress; exit 0 only on success")
    sub.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    sub = command("status", cmd_status, "show a training job (default: the latest)")
    sub.add_argument("job_id", metavar="JOB_ID", type=int, nargs="?")
    sub.add_argument("--wait", action="store_true", help="follow it until it finishes")
    sub.add_argument("--events", action="store_true", help="also list the job's events")
    sub.add_argument("--json", action="store_true", help="print the job as JSON")
    sub.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    sub = command("cancel", cmd_cancel, "cancel a queued or running job")
    sub.add_argument("job_id", metavar="JOB_ID", type=int)

    sub = command("models", cmd_models, "list your personal models")
    sub.add_argument("--json", action="store_true", help="print them as JSON")

    sub = command("activate", cmd_activate, "make a model the one predictions use")
    sub.add_argument("model_id", metavar="MODEL_ID", type=int)

    sub = command("predict", cmd_predict, "print your sliders for photos; write XMP sidecars or edited JPEGs")
    sub.add_argument("images", metavar="IMAGES", nargs="+", help="photos, or folders of photos")
    sub.add_argument("--strength", type=float, default=1.0, help="scale every slider, 0 to 2 (default 1)")
    sub.add_argument(
        "--xmp", action="store_true", help="write NAME.xmp beside each photo (Lightroom, Camera Raw)"
    )
    sub.add_argument(
        "--overwrite", action="store_true", help="replace .xmp sidecars this client did not write"
    )
    sub.add_argument(
        "--out", metavar="SIDECAR_DIR", help="write the sidecars there (default: beside each photo)"
    )
    sub.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="processes decoding previews for --xmp (default: every core)",
    )
    sub.add_argument("--render", metavar="OUT_DIR", help="write the edited photos as JPEGs into OUT_DIR")
    sub.add_argument(
        "--max-size", type=positive_int, help="longest side of rendered JPEGs (default: full size)"
    )
    sub.add_argument("--json", action="store_true", help="one JSON object per photo")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    server = "the server"
    try:
        settings = resolve_settings(args)
        server = settings.server
        return args.handler(args, settings)
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except LoginFailed as exc:
        err(f"error: {exc}")
        return EXIT_AUTH
    except AuthError:
        err(f"error: the server refused the token; run `{PROG} login`")
        return EXIT_AUTH
    except Unreachable as exc:
        err(f"error: cannot reach the server at {exc.server or server} ({exc.reason})")
        return EXIT_UNREACHABLE
    except ApiError as exc:
        err(f"error: {exc.detail}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err(
            "interrupted"
            + (" (the job keeps running on the server)" if args.command in ("train", "status") else "")
        )
        return EXIT_INTERRUPTED
