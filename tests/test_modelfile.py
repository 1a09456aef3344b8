"""Model files: round trip, self-description, refusals, the shipped base model, inference speed."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch

from rlcore import editor
from rlcore.imageio import thumbnail
from rlcore.modelfile import (
    BASE_MODEL_PATH,
    ModelFormatError,
    PersonalModel,
    load_model,
    model_bytes,
    save_model,
)
from rlcore.networks import Actor, Critic


def small_model(kind: str = "personal", critic: bool = True) -> PersonalModel:
    torch.manual_seed(0)
    with torch.no_grad():
        actor = Actor()
        for p in actor.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return PersonalModel(actor, Critic() if critic else None, metadata={"kind": kind, "metrics": {"x": 1.5}})


def thumbs(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def rewrite_metadata(data: bytes, change) -> bytes:
    """The same safetensors file with its rlcore JSON header edited by change(meta)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["rlcore"])
    change(meta)
    header["__metadata__"]["rlcore"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    return struct.pack("<Q", len(new)) + new + data[8 + n :]


def test_round_trip_is_exact_and_self_describing(tmp_path):
    model = small_model()
    path = tmp_path / "m.pt"
    size = save_model(model, path)
    assert size == path.stat().st_size < 1_000_000
    loaded = load_model(path)
    assert np.array_equal(loaded.predict_thumbnails(thumbs()), model.predict_thumbnails(thumbs()))
    meta = loaded.metadata
    assert meta["format_version"] == 1 and meta["arch"]["family"] == "plain"
    assert meta["adjustments"] == list(editor.ADJUSTMENTS)
    assert meta["kind"] == "personal" and meta["metrics"] == {"x": 1.5}
    assert meta["created_at"].endswith("+00:00")
    assert meta["actor_params"] > 0 and meta["model_id"].startswith("personal-")
    assert loaded.critic is not None
    # from bytes as well (the service reads model files from storage)
    assert load_model(path.read_bytes()).metadata["model_id"] == meta["model_id"]
    # actor-only files load too
    assert load_model(model_bytes(small_model(critic=False))).critic is None


def test_predict_returns_named_integer_sliders():
    model = small_model()
    image = np.random.default_rng(1).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    out = model.predict(image)
    assert list(out) == list(editor.ADJUSTMENTS)
    assert all(isinstance(v, int) and -100 <= v <= 100 for v in out.values())
    s = model.predict_thumbnails(thumbs(3))
    assert s.shape == (3, 12) and s.dtype == np.int64


def test_another_adjustment_list_is_refused(tmp_path):
    data = model_bytes(small_model())
    other = rewrite_metadata(data, lambda m: m.update(adjustments=["exposure", "contrast"]))
    with pytest.raises(ModelFormatError, match="adjustments"):
        load_model(other)
    reordered = rewrite_metadata(data, lambda m: m.update(adjustments=list(reversed(m["adjustments"]))))
    with pytest.raises(ModelFormatError, match="adjustments"):
        load_model(reordered)


def test_other_versions_and_foreign_files_are_refused(tmp_path):
    data = model_bytes(small_model())
    with pytest.raises(ModelFormatError, match="version"):
        load_model(rewrite_metadata(data, lambda m: m.update(format_version=99)))
    with pytest.raises(ModelFormatError, match="not an rlcore model"):
        load_model(b"hello, not a model at all")
    buf = io.BytesIO()
    torch.save({"actor": Actor().state_dict()}, buf)  # a pickle: never unpickled
    with pytest.raises(ModelFormatError, match="not an rlcore model"):
        load_model(buf.getvalue())
    from safetensors.torch import save

    with pytest.raises(ModelFormatError, match="without rlcore metadata"):
        load_model(save({"w": torch.zeros(3)}))
    with pytest.raises(ModelFormatError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_shipped_base_model():
    assert BASE_MODEL_PATH.is_file(), "rlcore/assets/base.pt is missing"
    assert BASE_MODEL_PATH.stat().st_size < 5_000_000  # the linear style prior: 2.2 MB
    base = load_model(BASE_MODEL_PATH)
    # a style prior since 2026-11-26 (rlcore/assets/BASE_MODEL.md): encoder, policy with its default code,
    # critic; it validated better than no edit on generated styles it never trained on
    assert base.metadata["kind"] == "prior" and base.critic is not None and base.encoder is not None
    assert base.metadata["base_version"] == base.metadata["model_id"]
    metrics = base.metadata["metrics"]
    assert metrics["val_delta_e_prior"] < 0.6 * metrics["val_delta_e_no_edit_env"]


def test_prediction_from_a_photo_equals_prediction_from_its_thumbnail():
    """predict() makes the same 64x64 thumbnail the stored pairs have (speed: bench/bench_inference.py)."""
    model = load_model(BASE_MODEL_PATH) if BASE_MODEL_PATH.is_file() else small_model()
    image = np.random.default_rng(2).integers(0, 256, (512, 384, 3), dtype=np.uint8)
    from_photo = model.predict(image)
    from_thumbnail = model.predict_thumbnails(thumbnail(image, size=64)[None])[0]
    assert list(from_photo) == model.adjustments
    assert list(from_photo.values()) == from_thumbnail.tolist()
    assert all(isinstance(v, int) and -100 <= v <= 100 for v in from_photo.values())
