"""The editor's client installs and runs alone: `pip install .` gives `personalize-client` with requests, tqdm
and Pillow, and nothing of the service (torch, Django, Celery, OpenCV, rlcore) is needed to run it."""

import shutil
import subprocess
import sys
import textwrap
import venv
from importlib.metadata import requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What a client-only install lacks: importing any of these from the client would break it there.
SERVER_ONLY = [
    "django",
    "rest_framework",
    "celery",
    "kombu",
    "redis",
    "torch",
    "numpy",
    "cv2",
    "colour",
    "safetensors",
    "matplotlib",
    "rlcore",
    "workers",
]


def test_client_imports_nothing_of_the_service():
    """Every client module imports, and `--help` of every command runs, with the service's packages made
    unimportable (as in a client-only install); none of them is loaded along the way."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {SERVER_ONLY!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not installed with the client alone")
                return None

        sys.meta_path.insert(0, Block())
        import personalize.client, personalize.client.api, personalize.client.cli
        import personalize.client.previews, personalize.client.shoot, personalize.client.__main__
        from personalize.client.cli import build_parser, main

        commands = [a for a in build_parser()._subparsers._group_actions if a.choices][0].choices
        assert main(["--help"]) == 0
        for command in commands:
            assert main([command, "--help"]) == 0, command
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
        assert not loaded, loaded
        print("commands:", len(commands))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "commands:" in result.stdout and "usage:" in result.stdout


def test_base_install_requires_only_what_the_client_needs():
    """The package's metadata: without extras, requests, tqdm and Pillow; the service's in [server]/[ml]."""
    base, extras = set(), {}
    for requirement in requires("personalize") or []:
        name = requirement.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()
        if "extra ==" in requirement:
            extra = requirement.split("extra ==")[1].strip().strip("\"'")
            extras.setdefault(extra, set()).add(name.lower())
        else:
            base.add(name.lower())
    assert base == {"requests", "tqdm", "pillow"}
    assert {"torch", "numpy", "opencv-python-headless"} <= extras["ml"]
    assert {"django", "celery", "djangorestframework", "personalize"} <= extras["server"]


@pytest.mark.slow
def test_pip_install_dot_in_a_fresh_virtualenv_gives_a_working_client_without_torch(tmp_path):
    """The real thing: a copy of the project installed with `pip install .` into a new virtualenv (from the
    package index: requests, tqdm, Pillow), then the console script runs and torch and Django are absent."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("personalize", "rlcore", "workers"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    install = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    help_run = subprocess.run(
        [bin_dir / "personalize-client", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "usage: personalize-client" in help_run.stdout
    for module in ("torch", "django", "celery", "cv2", "numpy"):
        probe = subprocess.run(
            [bin_dir / "python", "-c", f"import {module}"], capture_output=True, text=True, timeout=60
        )
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
