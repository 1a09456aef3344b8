"""Create an editor account and print its API token as the last word of the output.

python manage.py createeditor alice [--password-stdin]
TOKEN=$(python manage.py createeditor alice | awk '{print $NF}')
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from personalize.accounts import create_or_get_editor


class Command(BaseCommand):
    help = "Create an editor account (or reuse an existing one) and print its API token last."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read a password for the web login from standard input",
        )

    def handle(self, *args, username, email, password_stdin, **options):
        username = username.strip()
        if not username:
            raise CommandError("the username must not be empty")
        password = sys.stdin.readline().rstrip("\n") if password_stdin else None
        user, token = create_or_get_editor(username, password=password, email=email)
        self.stdout.write(f"Editor '{user.username}' (id {user.pk}). API token: {token}")
