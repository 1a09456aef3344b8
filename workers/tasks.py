"""Celery tasks: small, idempotent, taking ids, with explicit retry policies."""

from workers.celery import app


@app.task(name="workers.tasks.ping")
def ping(value: str = "pong") -> str:
    """Echo a value back: proves the whole path web -> broker -> worker -> result backend."""
    return value
