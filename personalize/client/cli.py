"""`personalize-client`: an editor's command line, from an export folder to a personal model and sidecars.

Talks to the service only through its public HTTP API (see api.py); nothing here imports Django.
The commands are in commands/ (one module per group), settings in config.py, folder matching
in folders.py. Results go to stdout, progress and messages to stderr. Exit codes: see the EXIT_* constants.
"""

from __future__ import annotations

import argparse
import os

from personalize.client.api import DEFAULT_TIMEOUT, ApiError, AuthError, Unreachable
from personalize.client.commands.account import cmd_login, cmd_logout
from personalize.client.commands.imports import cmd_import, cmd_import_status
from personalize.client.commands.models import cmd_activate, cmd_models
from personalize.client.commands.predict import cmd_predict
from personalize.client.commands.training import cmd_cancel, cmd_status, cmd_train
from personalize.client.commands.upload import cmd_upload
from personalize.client.common import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROG,
    LoginFailed,
    UsageError,
    err,
)
from personalize.client.config import DEFAULT_SERVER, resolve_settings


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


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
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

    sub = command("import", cmd_import, "send a zip of before/ and after/ folders; the server imports it")
    sub.add_argument(
        "zip_file", metavar="ZIP_FILE", help="a zip with before/ and after/ folders (same names)"
    )
    sub.add_argument(
        "--tag", action="append", help="tag every imported pair (repeatable, or comma-separated)"
    )
    sub.add_argument("--no-wait", action="store_true", help="print the import's id instead of following it")
    sub.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    sub = command("import-status", cmd_import_status, "show an import (default: the latest)")
    sub.add_argument("import_id", metavar="IMPORT_ID", type=int, nargs="?")
    sub.add_argument("--wait", action="store_true", help="follow it until it finishes")
    sub.add_argument("--json", action="store_true", help="print the import as JSON")
    sub.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    sub = command("train", cmd_train, "start training a personal model on your pairs")
    sub.add_argument(
        "--seconds",
        type=non_negative_int,
        help="training budget (default: the server's); 0: the instant model alone, ready in seconds",
    )
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
            + (
                " (it keeps running on the server)"
                if args.command in ("train", "status", "import", "import-status")
                else ""
            )
        )
        return EXIT_INTERRUPTED
