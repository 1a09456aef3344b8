"""`personalize-client`'s settings: the command line, else the environment, else the config file."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from personalize.client.api import DEFAULT_TIMEOUT, Client, normalize_server
from personalize.client.common import PROG, UsageError, write_atomically

DEFAULT_SERVER = "http://127.0.0.1:8000"


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
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)


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
