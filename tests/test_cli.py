"""The command line contract: python -m rlcore {finetune, predict, apply, evaluate, train-base}."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlcore import editor
from rlcore.cli import main
from rlcore.data import DataError, load_pairs_dir
from rlcore.modelfile import PersonalModel, load_model, save_model
from rlcore.networks import Actor, Critic

ROOT = Path(__file__).resolve().parent.parent


def photo(seed: int, size=(48, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    base = (
        rng.uniform(40, 200, 3) + 40 * np.sin(xx[..., None] / (5 + seed % 7)) + 30 * np.cos(yy[..., None] / 9)
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def brighter(img: np.ndarray) -> np.ndarray:
    return editor.apply(img, {"exposure": 35, "temperature": 20})


def make_pairs_dir(root: Path, n: int = 6) -> Path:
    (root / "before").mkdir(parents=True)
    (root / "after").mkdir()
    for i in range(n):
        img = photo(i)
        Image.fromarray(img).save(root / "before" / f"p{i}.png")
        Image.fromarray(brighter(img)).save(root / "after" / f"p{i}.jpg", quality=95)
    return root


@pytest.fixture
def tiny_base(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "base.pt"
    save_model(PersonalModel(Actor(), Critic(), metadata={"kind": "base"}), path)
    return path


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pairs_dir_matching_skips_unmatched_and_unreadable(tmp_path):
    root = make_pairs_dir(tmp_path / "pairs", n=4)
    Image.fromarray(photo(9)).save(root / "before" / "lonely.png")  # no after
    Image.fromarray(photo(8)).save(root / "after" / "orphan.png")  # no before
    (root / "before" / "broken.png").write_bytes(b"not an image")
    (root / "after" / "broken.png").write_bytes(b"\x89PNG garbage")
    (root / "before" / "notes.txt").write_text("ignored: not an image suffix")
    warnings: list[str] = []
    ps = load_pairs_dir(root, warn=warnings.append)
    assert ps.names == ["p0", "p1", "p2", "p3"]
    assert ps.before.shape == (4, 64, 64, 3) and ps.after.shape == (4, 64, 64, 3) and ps.weights is None
    text = "\n".join(warnings)
    assert "lonely" in text and "orphan" in text and "broken" in text
    assert len(warnings) == 3


def test_pairs_dir_masks_become_weights(tmp_path):
    root = make_pairs_dir(tmp_path / "pairs", n=3)
    (root / "masks").mkdir()
    mask = np.zeros((40, 48), np.uint8)
    mask[:20, :24] = 255
    Image.fromarray(mask).save(root / "masks" / "p0.png")
    ps = load_pairs_dir(root, face_weight=3.0, warn=lambda m: None)
    assert ps.weights is not None and ps.weights.shape == (3, 64, 64)
    w0 = ps.weights[0]
    assert w0[:20, :20].mean() > w0[-20:, -20:].mean()


def test_fewer_than_two_pairs_is_an_error(tmp_path, capsys, tiny_base):
    root = make_pairs_dir(tmp_path / "pairs", n=1)
    with pytest.raises(DataError, match="at least 2"):
        load_pairs_dir(root, warn=lambda m: None)
    code, out, err = run_main(
        capsys, "finetune", "--pairs", root, "--out", tmp_path / "m.pt", "--base", tiny_base
    )
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("error: ") and "at least 2" in err
    code, _, err = run_main(capsys, "finetune", "--pairs", tmp_path / "nope", "--out", tmp_path / "m.pt")
    assert code == 1 and "not found" in err


def test_finetune_predict_evaluate(tmp_path, capsys, tiny_base):
    root = make_pairs_dir(tmp_path / "pairs", n=6)
    out_model = tmp_path / "me.pt"
    code, out, err = run_main(
        capsys,
        "finetune",
        "--pairs",
        root,
        "--out",
        out_model,
        "--base",
        tiny_base,
        "--seconds",
        "4",
        "--seed",
        "1",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["bytes"] == out_model.stat().st_size
    assert summary["train_pairs"] == 5 and summary["val_pairs"] == 1
    # the progress bar on stderr: RL's figures, or only "before RL" where the instant model took the budget
    assert "finetune:" in err and ("step=" in err or "before RL, eta=" in err)
    assert load_model(out_model).metadata["kind"] == "personal"

    img = tmp_path / "x.png"
    Image.fromarray(photo(3)).save(img)
    code, out, err = run_main(capsys, "predict", "--model", out_model, img, img)
    assert code == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert len(lines) == 2 and lines[0]["image"] == str(img)
    assert list(lines[0]["adjustments"]) == list(editor.ADJUSTMENTS)

    code, out, err = run_main(capsys, "evaluate", "--model", out_model, "--pairs", root)
    assert code == 0, err
    report = json.loads(out)
    assert report["pairs"] == 6 and len(report["per_pair"]) == 6
    assert report["delta_e_no_edit"] > 0 and "delta_e_model" in report


def test_predict_errors(tmp_path, capsys, tiny_base):
    code, out, err = run_main(capsys, "predict", "--model", tmp_path / "missing.pt", tmp_path / "x.png")
    assert code == 1 and out == "" and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, _, err = run_main(capsys, "predict", "--model", bad, tmp_path / "x.png")
    assert code == 1 and "not an rlcore model" in err
    code, out, err = run_main(capsys, "predict", "--model", tiny_base, tmp_path / "missing.png")
    assert code == 1 and "missing.png" in err


def test_apply_with_json_or_file(tmp_path, capsys):
    img = photo(5)
    src = tmp_path / "in.png"
    Image.fromarray(img).save(src)
    adj = {"exposure": 30, "contrast": -10}
    out_path = tmp_path / "out.png"
    code, _, err = run_main(capsys, "apply", "--adjustments", json.dumps(adj), src, "--out", out_path)
    assert code == 0, err
    result = np.asarray(Image.open(out_path).convert("RGB"))
    assert np.array_equal(result, editor.apply(img, adj))
    f = tmp_path / "adj.json"
    f.write_text(json.dumps({"image": "x", "adjustments": adj}))  # predict's output line works too
    code, _, err = run_main(capsys, "apply", "--adjustments", f, src, "--out", tmp_path / "out2.png")
    assert code == 0, err
    code, _, err = run_main(capsys, "apply", "--adjustments", '{"sparkle": 3}', src, "--out", out_path)
    assert code == 1 and "sparkle" in err
    code, _, err = run_main(capsys, "apply", "--adjustments", "{oops", src, "--out", out_path)
    assert code == 1 and err.startswith("error: ")


def test_train_base_and_module_entry_point(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(3):
        Image.fromarray(photo(i, size=(120, 90))).save(images / f"{i}.png")
    out = tmp_path / "base.pt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlcore",
            "train-base",
            "--method",
            "plain",
            "--images",
            images,
            "--out",
            out,
            "--seconds",
            "6",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bytes"] == out.stat().st_size
    assert load_model(out).metadata["kind"] == "base" and load_model(out).encoder is None
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "train-base", "--images", images, "--out", out, "--seconds", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert load_model(out).metadata["kind"] == "prior" and load_model(out).encoder is not None
    again = tmp_path / "again.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "choose-default", "--model", out, "--images", images, "--out", again],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model_id"] == load_model(again).metadata["model_id"]
    assert (
        summary["strength"] == load_model(again).strength
        and summary["was"] == load_model(out).metadata["model_id"]
    )
    assert load_model(out).linear_prior is not None
    refitted = tmp_path / "refitted.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "fit-linear-prior", "--model", out, "--images", images, "--out", refitted,
         "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model_id"] == load_model(refitted).metadata["model_id"] != summary["was"]
    assert "fit-linear-prior" in proc.stderr, "a progress bar on stderr"
    plain = tmp_path / "plain.pt"
    save_model(PersonalModel(Actor(), Critic(), metadata={"kind": "base"}), plain)
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "fit-linear-prior", "--model", plain, "--images", images,
         "--out", refitted],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "not a style prior" in proc.stderr
    with_inverse = tmp_path / "with_inverse.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "fit-inverse", "--model", out, "--images", images, "--out", with_inverse,
         "--examples", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model_id"] == load_model(with_inverse).metadata["model_id"] != summary["was"]
    assert load_model(with_inverse).inverse is not None and summary["val_delta_e_inverse"] > 0
    assert "fit-inverse" in proc.stderr, "a progress bar on stderr"
    personal = tmp_path / "personal.pt"
    save_model(PersonalModel(Actor(), metadata={"kind": "personal"}), personal)
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "fit-inverse", "--model", personal, "--images", images, "--out", refitted],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "not a base model" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "rlcore", "frobnicate"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_face_weight_without_masks_uses_detected_faces(tmp_path):
    root = make_pairs_dir(tmp_path / "pairs", n=2)
    ps = load_pairs_dir(root, face_weight=2.0, warn=lambda m: None)
    # no faces in these generated photos: uniform weights of 1, but weights are there
    assert ps.weights is not None and ps.weights.shape == (2, 64, 64)
    assert np.allclose(ps.weights, 1.0)


def test_the_progress_bar_names_the_phase_before_rl_and_rl_s_figures_after():
    """Before the first environment step (the instant model's searches and fits) there is no reward to show:
    the bar says so instead of printing `reward=+nan`; from RL's first step on, its figures."""
    from rlcore.agent import Progress
    from rlcore.cli import _progress_bar

    bar, on_progress = _progress_bar("finetune")
    try:
        on_progress(Progress(0, 0.2, 7.6, 0.3, float("nan"), float("nan")))
        assert bar.postfix == "before RL, eta=8s"
        on_progress(Progress(40, 0.5, 30.0, 0.2, 0.25, 4.5))
        assert bar.postfix == "step=40 eps=0.200 reward=+0.250 valdE00=4.500 eta=30s"
    finally:
        bar.close()
