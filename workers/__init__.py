"""The Celery app. `celery -A workers worker` finds it as `workers.app`."""

from workers.celery import app

__all__ = ["app"]
