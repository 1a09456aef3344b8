"""Liveness of the three things the service needs: database, broker, at least one worker."""

from django.db import connection

from workers import app as celery_app


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # any failure means "down"; the message says why
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def check_broker() -> dict:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def check_workers(timeout: float = 1.0) -> dict:
    try:
        replies = celery_app.control.ping(timeout=timeout) or []
    except Exception as exc:
        return {"ok": False, "count": 0, "workers": [], "error": f"{type(exc).__name__}: {exc}"}
    names = sorted(name for reply in replies for name in reply)
    result = {"ok": bool(names), "count": len(names), "workers": names}
    if not names:
        result["error"] = f"no worker answered a ping within {timeout:g} s"
    return result


def health_report() -> dict:
    database = check_database()
    broker = check_broker()
    workers = check_workers() if broker["ok"] else {"ok": False, "count": 0, "error": "broker down"}
    ok = database["ok"] and broker["ok"] and workers["ok"]
    return {
        "status": "ok" if ok else "unavailable",
        "database": database,
        "broker": broker,
        "workers": workers,
    }
