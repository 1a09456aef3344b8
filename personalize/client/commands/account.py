"""`login` and `logout`: the API token in the config file."""

from __future__ import annotations

import argparse
import getpass
import sys

from personalize.client.api import ApiError
from personalize.client.common import EXIT_OK, LoginFailed, UsageError, err
from personalize.client.config import Settings, write_config


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
