"""The editor's inverse, learned once: (before, after) -> the sliders that made it (CleanRL style, one file).

Every personal model starts from labels: for each of the editor's pairs, the sliders that bring the
before closest to the after, found by searching with the editor as a black box (rlcore.agent). A search
from no edit wanders: sliders trade against each other (exposure against brightness, whites against
highlights), so two similar photos of one editor can get different labels for the same look, which the
linear policies fitted to them cannot carry to other photos. This network says where to start instead:
trained on random edits of real photos (the sliders that made each after are known: free supervision),
it reads what an edit did to a photo's tones and colours and answers with the sliders that usually do
that, the same answer for the same change on every photo. The search then only refines it.

* data: random crops of photos (the base model's), camera-like errors of random strength, random slider
  settings (dense or sparse, mild or strong) applied by the editor, ``InverseEditor.SIZE`` pixels a side
  (the searches' size);
* network: ``rlcore.networks.InverseEditor`` on ``rlcore.features.edit_statistics`` of the pair,
  trained by mean squared slider error (where sliders trade against each other it learns their usual
  mix: a consistent answer is the point);
* it travels in the base model's file (``with_inverse``); fine-tuning uses it where its base has one.

    python -m rlcore fit-inverse --model rlcore/assets/base.pt --images var/base_photos_v2 --out FILE
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rlcore import reward
from rlcore.agent import camera_jitter, edit, to_sliders
from rlcore.data import random_crops
from rlcore.features import edit_statistics
from rlcore.modelfile import PersonalModel
from rlcore.networks import InverseEditor, torch_threads

__all__ = ["InverseConfig", "train_inverse", "with_inverse"]


@dataclass
class InverseConfig:
    examples: int = 240_000  # random edits trained on ...
    edits_per_crop: int = 4  # ... each crop of a photo edited this many ways (cutting crops is the cost)
    hidden: int = 256
    epochs: int = 25
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # the random sliders: each example's spread drawn in [scale_min, scale_max] (action units; 1 = 100
    # slider points) and each slider kept with a probability drawn in [keep_min, 1]: from one slider
    # nudged to all twelve set far, as editors' looks range
    scale_min: float = 0.05
    scale_max: float = 0.6
    keep_min: float = 0.2
    val_examples: int = 2_000  # held out (other crops) to report the fit on
    threads: int = 1


def random_sliders(n: int, cfg: InverseConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, 12) random actions on the editor's integer grid (see InverseConfig)."""
    scale = torch.rand(n, 1, generator=gen) * (cfg.scale_max - cfg.scale_min) + cfg.scale_min
    keep_p = torch.rand(n, 1, generator=gen) * (1 - cfg.keep_min) + cfg.keep_min
    keep = torch.rand(n, 12, generator=gen) < keep_p
    return to_sliders(torch.randn(n, 12, generator=gen) * scale * keep) / 100.0


def make_examples(
    photos: list[np.ndarray], n: int, cfg: InverseConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n random edits of crops of photos: (before, after) uint8 (n, SIZE, SIZE, 3) and their actions (n, 12)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    crops = torch.from_numpy(random_crops(photos, -(-n // cfg.edits_per_crop), rng, size=InverseEditor.SIZE))
    crops = crops.repeat(cfg.edits_per_crop, 1, 1, 1)[:n]
    chunk = 32  # camera errors of one random strength per chunk (camera_jitter draws the rest per photo)
    before = torch.cat([camera_jitter(crops[i : i + chunk], gen, float(torch.rand(1, generator=gen)))
                        for i in range(0, n, chunk)])  # fmt: skip
    actions = random_sliders(n, cfg, gen)
    after = torch.cat([edit(before[i : i + 4096], actions[i : i + 4096]) for i in range(0, n, 4096)])
    return before, after, actions


def _statistics(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return torch.cat(
        [edit_statistics(before[i : i + 4096], after[i : i + 4096]) for i in range(0, len(before), 4096)]
    )


def train_inverse(
    photos: list[np.ndarray],
    cfg: InverseConfig | None = None,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[InverseEditor, dict]:
    """Trains the editor's inverse on random edits of photos: (network, metrics). on_progress(fraction)."""
    cfg = cfg or InverseConfig()
    with torch_threads(cfg.threads):
        return _train_inverse(photos, cfg, seed, on_progress or (lambda f: None))


def _train_inverse(photos, cfg: InverseConfig, seed: int, on_progress) -> tuple[InverseEditor, dict]:
    t_start = time.monotonic()
    torch.manual_seed(seed)
    # examples, then held-out examples of other crops: making them is about a third of the time
    before, after, y = make_examples(photos, cfg.examples, cfg, seed)
    x = _statistics(before, after)
    on_progress(0.3)
    val_before, val_after, val_y = make_examples(photos, cfg.val_examples, cfg, seed + 1)
    val_x = _statistics(val_before, val_after)

    net = InverseEditor(x.shape[1], cfg.hidden)
    net.in_mean.copy_(x.mean(0))
    net.in_std.copy_(x.std(0) + 1e-4)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(x) // cfg.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed + 2)
    for step in range(steps):
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
        loss = ((net(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0:
            on_progress(0.3 + 0.7 * step / steps)
    net.eval()
    with torch.no_grad():
        answered = net(val_x)
        predicted = to_sliders(answered) / 100.0
        target = reward.srgb_to_lab(val_after)
        metrics = {
            "val_slider_mse": round(float(((answered - val_y) ** 2).mean()), 5),
            "val_delta_e_no_edit": round(float(reward.mean_delta_e(val_before, target).mean()), 4),
            "val_delta_e_inverse": round(
                float(reward.mean_delta_e(edit(val_before, predicted), target).mean()), 4
            ),
            "examples": cfg.examples,
            "seconds": round(time.monotonic() - t_start, 1),
        }
    on_progress(1.0)
    return net, metrics


def with_inverse(
    model: PersonalModel,
    images: list[np.ndarray],
    cfg: InverseConfig | None = None,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> PersonalModel:
    """A base model's file with the editor's inverse trained (again) on `images`, its networks untouched: a
    new model_id, so personal models say which one they started from (and ``manage.py retrain_outdated``
    sees that they predate it)."""
    if model.metadata.get("kind") not in ("base", "prior"):
        raise ValueError(
            f"not a base model (kind {model.metadata.get('kind')!r}): personal models are not bases"
        )
    cfg = cfg or InverseConfig()
    net, metrics = train_inverse(images, cfg, seed, on_progress)
    keep = {k: v for k, v in model.metadata.items() if k not in ("model_id", "base_version", "created_at")}
    metadata = {**keep, "inverse": {"config": asdict(cfg), "seed": seed, "metrics": metrics,
                                    "refitted_from": model.metadata.get("model_id")}}  # fmt: skip
    return PersonalModel(model.actor, model.critic, metadata=metadata, encoder=model.encoder,
                         linear_prior=model.linear_prior, inverse=net)  # fmt: skip
