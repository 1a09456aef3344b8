"""Model files: the base model and personal models, as safetensors with a JSON header.

A model file is a plain safetensors file (whatever its extension: ``base.pt`` included); the tensors are
the actor's (``actor.*``) and optionally the critic's (``critic.*``) weights, and the safetensors metadata
holds one JSON document under the key ``rlcore``::

    {"format": "rlcore-model", "format_version": 1, "kind": "base" | "personal",
     "adjustments": [12 slider names, in order], "model_id": "...", "base_version": "...",
     "arch": {...network sizes...}, "metrics": {...}, "created_at": "ISO-8601 UTC", ...}

Loading never unpickles anything.  A file for another adjustment list or format version is refused with
ModelFormatError.

A model file is what a training run publishes and what predictions load. It is not a training
checkpoint: the resumable state of a run in progress (optimisers, replay buffer, RNG states) is
rlcore.agent's business and never leaves the machine that trains.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore.editor import ADJUSTMENTS
from rlcore.features import CONV_THUMB, N_FEATURES, conv_input, features, resize_u8
from rlcore.files import write_atomic
from rlcore.imageio import THUMB_SIZE, thumbnail
from rlcore.networks import (
    Actor,
    Critic,
    DistilledActor,
    FixedStyleCritic,
    InverseEditor,
    LinearPolicy,
    LinearStylePrior,
    StyleActor,
    StyleCritic,
    StyleEncoder,
    StylePolicy,
    n_params,
    torch_threads,
)

FORMAT = "rlcore-model"
READABLE_FORMAT_VERSIONS = (1, 2)  # 1: plain actor-critic; 2: style-conditioned (rlcore.prior)
FEATURE_VERSION = 1
BASE_MODEL_PATH = Path(__file__).resolve().parent / "assets" / "base.pt"
MAX_HEADER_BYTES = 10_000_000

__all__ = ["PersonalModel", "ModelFormatError", "save_model", "load_model", "model_bytes", "BASE_MODEL_PATH"]


class ModelFormatError(ValueError):
    """The file is not an rlcore model this code can use (the message says why)."""


class PersonalModel:
    """An actor (and optionally its critic) plus self-describing metadata; predicts sliders for photos.

    Two families (rlcore.networks): "plain" (Actor and Critic, format 1) and "style" (the style policy
    with a style code, format 2, trained by rlcore.prior); a style prior also carries the encoder that
    reads an editor's pairs, and may carry the distribution of styles' linear policies (LinearStylePrior)
    that fine-tuning's distillation shrinks towards. A base of either family may carry the editor's
    inverse (InverseEditor, rlcore.inverse), where fine-tuning's searches start.
    """

    def __init__(self, actor, critic=None, metadata: dict[str, Any] | None = None, encoder=None,
                 linear_prior: LinearStylePrior | None = None, inverse: InverseEditor | None = None):  # fmt: skip
        self.actor = actor.eval()
        self.critic = critic.eval() if critic is not None else None
        self.encoder = encoder.eval() if encoder is not None else None
        self.linear_prior = linear_prior
        self.inverse = inverse.eval() if inverse is not None else None
        meta = dict(metadata or {})
        meta.setdefault("kind", "personal")
        meta.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
        meta["format"] = FORMAT
        meta["feature_version"] = FEATURE_VERSION
        meta["adjustments"] = meta.get("adjustments") or list(ADJUSTMENTS)
        rl_actor = actor.actor if isinstance(actor, DistilledActor) else actor
        if isinstance(rl_actor, StyleActor):
            meta["format_version"] = 2
            meta["arch"] = {
                "family": "style",
                "n_features": rl_actor.policy.feat_mean.numel(),
                "style_dim": rl_actor.z.shape[1],
                "actor_hidden": rl_actor.policy.mlp[0].out_features,
                "critic_hidden": critic.critic.net[0].out_features if critic is not None else None,
                "encoder_hidden": encoder.phi[0].out_features if encoder is not None else None,
                "thumb": THUMB_SIZE,
                "distilled": isinstance(actor, DistilledActor),
                "other": _other_arch(actor),
            }
        else:
            meta["format_version"] = 1
            meta["arch"] = {
                "family": "plain",
                "n_features": rl_actor.feat_mean.numel(),
                "actor_hidden": rl_actor.mlp[0].out_features,
                "conv_channels": rl_actor.conv[2].out_channels,
                "critic_hidden": critic.net[0].out_features if critic is not None else None,
                "thumb": THUMB_SIZE,
                "conv_thumb": CONV_THUMB,
                # tensors actor.actor.* and actor.linear.* (a DistilledActor) instead of actor.*
                "distilled": isinstance(actor, DistilledActor),
                "other": _other_arch(actor),
            }
        if inverse is not None:
            meta["arch"]["inverse"] = {
                "inputs": inverse.in_mean.numel(),
                "hidden": inverse.net[0].out_features,
            }
        meta["actor_params"] = n_params(actor)
        meta["critic_params"] = n_params(critic) if critic is not None else 0
        if not meta.get("model_id"):
            meta["model_id"] = f"{meta['kind']}-{_weights_hash(self._tensors(), meta.get('strength'))}"
        if meta["kind"] in ("base", "prior"):  # a base (plain or a style prior) is its own version
            meta.setdefault("base_version", meta["model_id"])
        self.metadata = meta

    @property
    def strength(self) -> float:
        """The global strength fine-tuning calibrated on validation (0 = no edit); files without one: 1."""
        return float(self.metadata.get("strength", 1.0))

    @property
    def adjustments(self) -> list[str]:
        return list(self.metadata["adjustments"])

    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {f"actor.{k}": v.detach().contiguous() for k, v in self.actor.state_dict().items()}
        if self.critic is not None:
            t.update({f"critic.{k}": v.detach().contiguous() for k, v in self.critic.state_dict().items()})
        if self.encoder is not None:
            t.update({f"encoder.{k}": v.detach().contiguous() for k, v in self.encoder.state_dict().items()})
        if self.linear_prior is not None:
            t.update({f"linear_prior.{k}": v.contiguous() for k, v in self.linear_prior.state_dict().items()})
        if self.inverse is not None:
            t.update({f"inverse.{k}": v.detach().contiguous() for k, v in self.inverse.state_dict().items()})
        return t

    @torch.no_grad()
    def predict_actions(self, thumbs) -> torch.Tensor:
        """uint8 (N, 64, 64, 3) thumbnails -> actions in [-1, 1] (float tensor (N, 12))."""
        x = (
            torch.from_numpy(np.require(thumbs, np.uint8, ["C", "W"]))
            if not torch.is_tensor(thumbs)
            else thumbs
        )
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"thumbnails must be (N, H, W, 3) uint8, got {tuple(x.shape)}")
        if x.shape[1:3] != (THUMB_SIZE, THUMB_SIZE):
            x = resize_u8(x, THUMB_SIZE)
        # tiny tensors: one thread is fastest, and 2 threads on a busy 2-core machine are ~50x slower
        with torch_threads(1 if x.shape[0] <= 64 else 0):
            return self.actor(features(x), conv_input(x)) * self.strength

    def predict_thumbnails(self, thumbs) -> np.ndarray:
        """uint8 (N, 64, 64, 3) thumbnails -> int slider values (N, 12) in the editor's ADJUSTMENTS order."""
        a = self.predict_actions(thumbs)
        return (a.clamp(-1, 1) * 100).round().to(torch.int64).numpy()

    def predict(self, image) -> dict[str, int]:
        """A photo (uint8 H x W x 3, any size) -> {adjustment name: int}; computes the thumbnail itself."""
        thumb = thumbnail(np.asarray(image), size=THUMB_SIZE)
        values = self.predict_thumbnails(thumb[None])[0]
        return {name: int(v) for name, v in zip(self.adjustments, values, strict=True)}

    def __repr__(self) -> str:
        return f"PersonalModel({self.metadata.get('model_id')}, kind={self.metadata.get('kind')})"


def _weights_hash(tensors: dict[str, torch.Tensor], strength: float | None = None) -> str:
    """What makes the predictions: the weights, and the strength they are served at where one is set."""
    h = hashlib.sha256()
    if strength is not None:
        h.update(f"strength={float(strength)!r}".encode())
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].float().numpy().tobytes())
    return h.hexdigest()[:12]


def model_bytes(model: PersonalModel) -> bytes:
    """The model file's content."""
    from safetensors.torch import save

    return save(model._tensors(), metadata={"rlcore": json.dumps(model.metadata, sort_keys=True)})


def save_model(model: PersonalModel, path: str | Path) -> int:
    """Writes the model file atomically (a reader sees the old file or the new one); returns its bytes."""
    return write_atomic(path, model_bytes(model))


def _read_header(data: bytes) -> dict:
    if len(data) < 8:
        raise ModelFormatError("not an rlcore model file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n <= 0 or n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise ModelFormatError(
            "not an rlcore model file (no safetensors header; pickled checkpoints are refused)"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except Exception as exc:
        raise ModelFormatError("not an rlcore model file (unreadable safetensors header)") from exc
    meta = header.get("__metadata__") or {}
    if "rlcore" not in meta:
        raise ModelFormatError("not an rlcore model file (a safetensors file without rlcore metadata)")
    try:
        return json.loads(meta["rlcore"])
    except Exception as exc:
        raise ModelFormatError("not an rlcore model file (corrupt rlcore metadata)") from exc


def load_model(source: str | Path | bytes | bytearray, *, check_adjustments: bool = True) -> PersonalModel:
    """Loads a model file (path or bytes). Raises ModelFormatError for anything else than a compatible model."""
    from safetensors.torch import load

    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        where = "model data"
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelFormatError(f"model file not found: {path}")
        data = path.read_bytes()
        where = str(path)
    meta = _read_header(data)
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"{where}: not an rlcore model file (format {meta.get('format')!r})")
    if (
        meta.get("format_version") not in READABLE_FORMAT_VERSIONS
        or meta.get("feature_version") != FEATURE_VERSION
    ):
        raise ModelFormatError(
            f"{where}: model format version {meta.get('format_version')}/{meta.get('feature_version')} "
            f"is not supported (this rlcore reads {READABLE_FORMAT_VERSIONS}/{FEATURE_VERSION}); retrain the model"
        )
    if check_adjustments:
        ours = list(ADJUSTMENTS)
        theirs = meta.get("adjustments")
        if theirs != ours:
            raise ModelFormatError(
                f"{where}: model was trained for adjustments {theirs} but this editor has {ours}; "
                "retrain it (fine-tune again from a matching base model)"
            )
    arch = meta.get("arch") or {}
    try:
        tensors = load(data)
        actor, critic, encoder, linear_prior, inverse = _networks(arch, tensors)
    except Exception as exc:
        raise ModelFormatError(f"{where}: model weights do not match its header ({exc})") from exc
    if int(arch.get("n_features", -1)) != N_FEATURES:
        raise ModelFormatError(
            f"{where}: model uses {arch.get('n_features')} features, this rlcore {N_FEATURES}"
        )
    return PersonalModel(
        actor, critic, metadata=meta, encoder=encoder, linear_prior=linear_prior, inverse=inverse
    )


def _other_arch(actor) -> dict | None:
    """What the second policy of a hedged actor (``networks.hedged``) is, for loading: tensors actor.other.*."""
    if isinstance(actor, DistilledActor) and actor.other is not None:
        return {"distilled": isinstance(actor.other, DistilledActor)}
    return None


def _with_actor_share(arch: dict, actor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distilled files written before the actor's share was stored blend with 1 - mix: say so."""
    if arch.get("distilled") and "actor_share" not in actor:
        return {**actor, "actor_share": 1 - actor["mix"]}
    return actor


def _networks(arch: dict, tensors: dict[str, torch.Tensor]):
    """The networks a model file describes, with its weights: (actor, critic or None, encoder or None,
    linear prior or None, inverse or None)."""

    def part(prefix: str) -> dict[str, torch.Tensor] | None:
        found = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        return found or None

    n = int(arch["n_features"])
    critic = encoder = None
    plain = arch.get("family", "plain") == "plain"
    d = None if plain else int(arch["style_dim"])  # the style code's size

    def policy(distilled: bool, other: dict | None = None):
        if plain:
            actor = Actor(n, int(arch["actor_hidden"]), int(arch["conv_channels"]))
        else:
            actor = StyleActor(StylePolicy(n, d, int(arch["actor_hidden"])), torch.zeros(1, d))
        if not distilled:
            return actor
        second = None if other is None else policy(bool(other["distilled"]))
        return DistilledActor(actor, LinearPolicy(n), other=second)

    actor = policy(bool(arch.get("distilled")), arch.get("other"))
    actor.load_state_dict(_with_actor_share(arch, part("actor")))
    inverse = None
    if arch.get("inverse"):
        inverse = InverseEditor(int(arch["inverse"]["inputs"]), int(arch["inverse"]["hidden"]))
        inverse.load_state_dict(part("inverse"))
    if plain:
        if part("critic"):
            critic = Critic(n, int(arch["critic_hidden"]))
            critic.load_state_dict(part("critic"))
        return actor, critic, encoder, None, inverse
    if part("critic"):
        critic = FixedStyleCritic(StyleCritic(n, d, int(arch["critic_hidden"])), torch.zeros(1, d))
        critic.load_state_dict(part("critic"))
    if part("encoder"):
        encoder = StyleEncoder(n, int(arch["encoder_hidden"]), d)
        encoder.load_state_dict(part("encoder"))
    linear_prior = None
    if part("linear_prior"):
        linear_prior = LinearStylePrior(n)
        linear_prior.load_state_dict(part("linear_prior"))
    return actor, critic, encoder, linear_prior, inverse
