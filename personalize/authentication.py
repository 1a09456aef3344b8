"""Token authentication for the API: DRF's, with its one query written out as SQL.

Every API request authenticates. DRF looks the token up with ``Token.objects.select_related("user")
.get(key=...)``; building and compiling that query cost ~1 ms of a full-file prediction's CPU, many times
the indexed lookup itself. The same join as one SQL statement gives the same user and token objects (the
database's values converted as the ORM converts them: SQLite's booleans and datetimes, say).
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

_TOKEN_FIELDS = ("key", "user_id", "created")


@cache
def _user_fields() -> tuple[str, ...]:
    return tuple(field.attname for field in get_user_model()._meta.concrete_fields)


def _token_user_sql(connection) -> str:
    """The token row and its user's, joined on the token's primary key (an index)."""
    qn = connection.ops.quote_name
    token, user = Token._meta, get_user_model()._meta
    columns = [f"t.{qn(token.get_field(name).column)}" for name in _TOKEN_FIELDS]
    columns += [f"u.{qn(user.get_field(name).column)}" for name in _user_fields()]
    return (
        f"SELECT {', '.join(columns)} FROM {qn(token.db_table)} t INNER JOIN {qn(user.db_table)} u "
        f"ON u.{qn(user.pk.column)} = t.{qn(token.get_field('user').column)} "
        f"WHERE t.{qn(token.pk.column)} = %s"
    )


def _from_row(connection, model, names: tuple[str, ...], values):
    """An instance of `model` from raw column values, through the converters the ORM would apply."""
    converted = []
    for name, value in zip(names, values, strict=True):
        field = model._meta.get_field(name)
        column = field.get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, names, converted)


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, answered exactly as DRF's TokenAuthentication answers it."""

    def authenticate_credentials(self, key):
        connection = connections[router.db_for_read(Token)]
        with connection.cursor() as cursor:
            cursor.execute(_token_user_sql(connection), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        n = len(_TOKEN_FIELDS)
        user = _from_row(connection, get_user_model(), _user_fields(), row[n:])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token = _from_row(connection, Token, _TOKEN_FIELDS, row[:n])
        token.user = user
        return user, token
