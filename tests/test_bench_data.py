"""The benchmark's data layer (bench/photos.py, bench/rawtherapee.py): the photo split and RawTherapee calls;
and bench/machine.py, what its figures record of the machine.

Nothing here downloads: the split is checked on the list itself, and RawTherapee on a synthetic image.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import machine, photos, rawtherapee
from rlcore.data import BASE_PHOTOS

needs_rawtherapee = pytest.mark.skipif(rawtherapee.missing() is not None, reason=str(rawtherapee.missing()))


def gradient(h: int = 96, w: int = 128) -> np.ndarray:
    """A colourful, mid-contrast synthetic photo: every profile has something to change."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([40 + 150 * x / w, 60 + 120 * y / h, 170 - 100 * x / w], axis=-1)
    return img.astype(np.uint8)


def test_every_photo_has_exactly_one_known_role():
    assert all(p.role in photos.ROLES for p in photos.PHOTOS)
    names = [p.name for p in photos.PHOTOS]
    sources = [(p.package, p.path) for p in photos.PHOTOS]
    assert len(set(names)) == len(names), "a photo name is listed twice"
    assert len(set(sources)) == len(sources), "the same file is listed twice (maybe in two roles)"


def test_roles_are_disjoint_and_cover_the_list():
    by_role = {role: {p.name for p in photos.PHOTOS if p.role == role} for role in photos.ROLES}
    assert not by_role["base"] & by_role["train"]
    assert not by_role["base"] & by_role["heldout"]
    assert not by_role["train"] & by_role["heldout"]
    assert sum(photos.summary().values()) == len(photos.PHOTOS)
    assert all(count > 0 for count in photos.summary().values())


def test_every_entry_says_why_it_is_listed():
    for p in photos.PHOTOS:
        assert p.reason.startswith(("photo:", "scientific:")), p
        assert len(p.reason.split(":", 1)[1].strip()) > 10, p
    assert all(p.reason.startswith("photo:") for p in photos.PHOTOS if p.role != "base")


def test_base_model_photos_stay_in_base():
    roles = {p.path: p.role for p in photos.PHOTOS if p.package == photos.PYTHON}
    assert {name: roles.get(name) for name in BASE_PHOTOS} == dict.fromkeys(BASE_PHOTOS, "base")


def test_load_rejects_an_unknown_role():
    with pytest.raises(ValueError, match="role must be one of"):
        photos.load("validation")


def test_missing_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "apt-get install -y rawtherapee" in rawtherapee.missing()


@needs_rawtherapee
def test_apply_returns_same_size_edited_images_and_caches_them(tmp_path, monkeypatch):
    images = [gradient(), gradient(80, 60)[:, ::-1], gradient(7, 300)]
    results = {}
    for style in rawtherapee.STYLES:
        out = rawtherapee.apply(style, images, cache_dir=tmp_path / style)
        assert [o.shape for o in out] == [i.shape for i in images]
        assert all(o.dtype == np.uint8 for o in out)
        assert all(np.abs(o.astype(int) - i).mean() > 2 for o, i in zip(out, images, strict=True)), style
        assert len(list((tmp_path / style).glob("*.npy"))) == 3
        results[style] = out

    def no_second_run(*args):
        raise AssertionError("rawtherapee-cli ran again for cached images")

    monkeypatch.setattr(rawtherapee, "_run", no_second_run)
    for style, out in results.items():
        again = rawtherapee.apply(style, images, cache_dir=tmp_path / style)
        assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))


def test_the_machine_record_names_the_code_path_and_versions(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    record = machine.describe()
    assert record["mkl_cbwr"] == "AVX2" and record["versions"]["torch"].startswith("2.")
    line = machine.summary(record)
    assert record["torch_cpu_capability"] in line and "MKL_CBWR=AVX2" in line
    monkeypatch.delenv("MKL_CBWR")
    assert "MKL_CBWR" not in machine.summary()


def test_every_benchmark_script_runs_as_the_docs_call_it(tmp_path):
    """`.venv/bin/python bench/X.py --help` from any directory: a script that imports `bench` or `rlcore`
    without putting the repository on sys.path first fails at once (bench/photos.py did, stop 44)."""
    bench_dir = Path(photos.__file__).resolve().parent
    scripts = sorted(p for p in bench_dir.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())
    assert len(scripts) >= 10
    runs = {
        p.name: subprocess.Popen(
            [sys.executable, str(p), "--help"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in scripts
    }
    stderr = {name: run.communicate(timeout=120)[1][-400:] for name, run in runs.items()}
    assert {name: err for name, err in stderr.items() if runs[name].returncode != 0} == {}
