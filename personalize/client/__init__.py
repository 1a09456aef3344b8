"""The editor's command-line client, `personalize-client`: uses only the public HTTP API (no Django)."""

from personalize.client.api import ApiError, AuthError, Client, Unreachable
from personalize.client.cli import main

__all__ = ["ApiError", "AuthError", "Client", "Unreachable", "main"]
