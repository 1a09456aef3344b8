"""Editor accounts: a Django user plus an API token."""

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token


@transaction.atomic
def create_or_get_editor(username: str, password: str | None = None, email: str = "") -> tuple:
    """Return (user, token key), creating both when missing. An existing user keeps its password."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key
