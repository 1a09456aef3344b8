"""The style prior: how editors edit, learned once across thousands of generated styles (CleanRL style).

A personal model trained from scratch on ~40 pairs has to discover from those pairs alone how an editor's
choices depend on the photo.  The prior learns that once, offline: an encoder reads a set of (before,
after) pairs and gives a style code z; the actor and the critic take (state, z).  A new editor's pairs
then only have to say *which* style theirs is (the instant model: encode, act), and RL fine-tuning
(rlcore.agent.finetune) refines the code and the actor from there.

The same one-step actor-critic as rlcore.agent, across styles:

* a bank of generated styles (rlcore.stylegen), each editing a few camera-like befores cut from photos;
* every iteration: draw styles; encode a random-sized context of each style's pairs into z; for other
  pairs of the same styles (the queries), act epsilon-greedily around actor(s, z); run the editor (a black
  box) and score the reward (dE00 reduction to the style's after); store (pair, context, a, r);
* critic: regress Q(s, z, a) on the rewards (Q(s, z, 0) = 0); actor and encoder: maximise Q(s, z,
  actor(s, z)), imitate the best action the editor has confirmed for each pair, and, where the style was
  realised by the editor's own sliders, regress on those sliders (free supervision);
* every few iterations: validation dE00 on styles never trained on, with their own context pairs; keep
  the best.

``train_prior`` returns the prior as a model file (rlcore.modelfile.PersonalModel, kind "prior") that
can be fine-tuning's base: its ``actor`` acts with a default code (the code of "bring camera errors back",
so editors without a personal model get mild corrections), its ``encoder`` encodes an editor's pairs.
The networks themselves (StyleEncoder, StylePolicy, StyleCritic, and StyleActor / FixedStyleCritic with
one code fixed) are in rlcore.networks, where model files find them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from rlcore import reward, stylegen
from rlcore.agent import (
    FinetuneResult,
    Progress,
    camera_jitter,
    consensus_search,
    edit,
    search_actions,
    to_sliders,
)
from rlcore.data import random_crops
from rlcore.features import N_FEATURES, features, resize_u8
from rlcore.imageio import THUMB_SIZE
from rlcore.modelfile import PersonalModel
from rlcore.networks import (
    FixedStyleCritic,
    LinearStylePrior,
    StyleActor,
    StyleCritic,
    StyleEncoder,
    StylePolicy,
    pair_features,
    torch_threads,
)

__all__ = ["PriorConfig", "train_prior"]


VAL_CONTEXT = 10  # pairs a validation style's code is read from; its other photos are the queries


@dataclass
class PriorConfig:
    # networks
    style_dim: int = 32
    encoder_hidden: int = 128
    actor_hidden: int = 256
    critic_hidden: int = 256
    # the bank of generated styles
    n_styles: int = 2400  # training styles (validation styles come on top)
    val_styles: int = 96
    photos_per_style: int = 24
    # "restore" styles: the editor only undoes the camera's errors and leaves photos that need nothing alone
    # (see make_bank); what an editor without a personal model gets is such a style's code
    restore_fraction: float = 0.1
    # photos kept out of the banks: the default for editors without a personal model is checked on them
    # (measured: the default's edits change the prior's own photos much less than unseen ones)
    check_share: float = 0.25
    env_size: int = 32  # the reward's thumbnail side while training (validation: 64)
    # one iteration
    styles_per_batch: int = 32
    queries_per_style: int = 4  # environment steps per style per iteration
    context_min: int = 3  # pairs the encoder reads, drawn uniformly per style and iteration
    context_max: int = 12
    # exploration: epsilon-greedy with linear decay plus Gaussian noise of a log-uniform scale
    eps_start: float = 0.5
    eps_end: float = 0.05
    eps_decay_fraction: float = 0.7
    noise_min: float = 0.01
    noise_max: float = 0.3
    p_around_best: float = 0.5
    # the offline search that seeds each training pair's best action (see search_best_actions)
    search_size: int = 16
    search_iters: int = 12
    search_popsize: int = 12
    # supervised warm start: the policy and encoder imitate the searched best actions (no critic yet)
    warm_fraction: float = 0.6
    # replay and updates
    buffer_size: int = 400_000
    batch_size: int = 256
    critic_updates: int = 1
    lr_critic: float = 1e-3
    lr_actor: float = 3e-4
    huber_delta: float = 2.0
    self_imitation: float = 10.0
    supervision: float = 2.0  # slider regression where the style's sliders are known
    # regularisers of the policy's update step, as in fine-tuning (Config.feat_noise, Config.actor_dropout):
    # Gaussian noise on its standardised features and dropout, so that it cannot tell its few photos apart
    # by their statistics (0: off, as shipped; docs/agent.md, "What limits the personal model")
    feat_noise: float = 0.0
    actor_dropout: float = 0.0
    max_grad_norm: float = 1.0
    # validation
    val_every: int = 250
    threads: int = 1
    # the linear style prior (fit_linear_prior): styles x photos whose sliders are searched through each
    # style's consensus as fine-tuning searches an editor's; each style's ridge policy (this penalty);
    # the covariance of those policies shrunk this far towards its diagonal (linear_styles 0: no linear
    # prior in the model file)
    linear_styles: int = 400
    linear_photos_per_style: int = 32
    linear_search_iters: int = 24
    linear_style_penalty: float = 3.0
    linear_shrinkage: float = 0.1

    @classmethod
    def for_budget(cls, seconds: float) -> PriorConfig:
        """The default config with a bank of styles that a budget of `seconds` can use (and build fast)."""
        # about one style per 2 s of budget: each of a style's pairs is then revisited often enough for the
        # search around its best action to progress (measured: 8-15 iterations/s of 128 pairs each)
        # the linear prior's search (about 17 minutes for the full 400 styles) in proportion, so that a
        # short run stays short (3,000 s and more: all of them)
        return cls(
            n_styles=int(np.clip(seconds / 2, 32, cls.n_styles)),
            val_styles=int(np.clip(seconds / 25, 8, cls.val_styles)),
            linear_styles=int(np.clip(seconds / 7.5, 4, cls.linear_styles)),
        )


# ------------------------------------------------------------------------------------------------------
# The bank of generated styles
# ------------------------------------------------------------------------------------------------------


@dataclass
class _Bank:
    """S styles x P photos: befores, afters, their features, and the reward's precomputed parts."""

    before: torch.Tensor  # uint8 (S, P, 64, 64, 3)
    after: torch.Tensor
    sliders: torch.Tensor  # float (S, P, 12): the style's own sliders / 100, NaN where unknown
    env_size: int

    def __post_init__(self):
        s, p = self.before.shape[:2]
        flat_b = self.before.reshape(s * p, THUMB_SIZE, THUMB_SIZE, 3)
        flat_a = self.after.reshape(s * p, THUMB_SIZE, THUMB_SIZE, 3)
        self.feats_before = _chunked(features, flat_b).reshape(s, p, -1)
        self.feats_after = _chunked(features, flat_a).reshape(s, p, -1)
        self.pairs = pair_features(self.feats_before, self.feats_after)
        self.before_env = resize_u8(flat_b, self.env_size).reshape(s, p, self.env_size, self.env_size, 3)
        target_env = resize_u8(flat_a, self.env_size)
        self.target_lab_env = _chunked(reward.srgb_to_lab, target_env).reshape(
            s, p, self.env_size, self.env_size, 3
        )
        baseline = _chunked(
            lambda i: reward.mean_delta_e(
                self.before_env.reshape(-1, self.env_size, self.env_size, 3)[i],
                self.target_lab_env.reshape(-1, self.env_size, self.env_size, 3)[i],
            ),
            torch.arange(s * p),
        )
        self.baseline = baseline.reshape(s, p)
        self.has_sliders = ~torch.isnan(self.sliders[..., 0])

    @property
    def n_styles(self) -> int:
        return self.before.shape[0]

    @property
    def n_photos(self) -> int:
        return self.before.shape[1]

    def step(self, si: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Rewards of editing pairs (si, pi) with actions: the editor runs, the reward scores."""
        edited = edit(self.before_env[si, pi], actions)
        return (self.baseline[si, pi] - reward.mean_delta_e(edited, self.target_lab_env[si, pi])).float()


def _chunked(fn, x: torch.Tensor, size: int = 4096) -> torch.Tensor:
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


def make_bank(
    photos: list[np.ndarray],
    n_styles: int,
    photos_per_style: int,
    seed: int,
    env_size: int,
    restore_fraction: float = 0.0,
) -> _Bank:
    """Generated styles applied to camera-like befores cut from photos (crops differ per style).

    A `restore_fraction` of the styles are "restore" styles instead: their after is the crop as it was
    before the camera's errors, and a random share of their befores (up to MAX_UNTOUCHED) is that crop
    itself, so the pair says "leave it alone". An editor without a personal model gets such a style
    (default_code_pairs); trained on them, the prior learns when a photo needs nothing.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n = n_styles * photos_per_style
    crops = torch.from_numpy(random_crops(photos, n, rng, size=THUMB_SIZE))
    befores = _chunked(lambda x: camera_jitter(x, gen, 1.0), crops)
    styles = stylegen.random_styles(n_styles, gen)
    which = torch.arange(n_styles).repeat_interleave(photos_per_style)
    afters, sliders = [], []
    for i in range(0, n, 4096):
        a, s = stylegen.apply(styles, which[i : i + 4096], befores[i : i + 4096])
        afters.append(a)
        sliders.append(s)
    afters, sliders = torch.cat(afters), torch.cat(sliders)
    n_restore = round(restore_fraction * n_styles)
    if n_restore:  # drawn last, so that a bank without restore styles is the same as before they existed
        restore = torch.zeros(n_styles, dtype=torch.bool)
        restore[torch.randperm(n_styles, generator=gen)[:n_restore]] = True
        share = torch.rand(n_styles, generator=gen) * MAX_UNTOUCHED
        untouched = restore[which] & (torch.rand(n, generator=gen) < share[which])
        befores = torch.where(untouched.view(n, 1, 1, 1), crops, befores)
        afters = torch.where(restore[which].view(n, 1, 1, 1), crops, afters)
        sliders[restore[which]] = float("nan")
    shape = (n_styles, photos_per_style)
    return _Bank(
        befores.reshape(*shape, THUMB_SIZE, THUMB_SIZE, 3),
        afters.reshape(*shape, THUMB_SIZE, THUMB_SIZE, 3),
        sliders.reshape(*shape, 12) / 100.0,
        env_size,
    )


@torch.no_grad()
def search_best_actions(
    bank: _Bank,
    size: int,
    iters: int,
    popsize: int,
    gen: torch.Generator,
    chunk: int = 320,
    on_chunk: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best action found for every (style, photo) of the bank, and its reward: (S, P, 12), (S, P).

    rlcore.agent.search_actions on every pair, in chunks, on `size` x `size` copies: global edits have
    nearly the same best sliders at any size. Slider styles start from their own sliders. These are the
    first "best confirmed actions" of training; the epsilon-greedy exploration keeps improving them.
    """
    s, p = bank.n_styles, bank.n_photos
    before = resize_u8(bank.before.reshape(s * p, THUMB_SIZE, THUMB_SIZE, 3), size)
    after = resize_u8(bank.after.reshape(s * p, THUMB_SIZE, THUMB_SIZE, 3), size)
    target = _chunked(reward.srgb_to_lab, after)
    start = torch.nan_to_num(bank.sliders.reshape(s * p, 12))
    found = []
    for i in range(0, s * p, chunk):
        found.append(search_actions(before[i : i + chunk], target[i : i + chunk], start[i : i + chunk], iters,
                                    popsize, gen))  # fmt: skip
        if on_chunk is not None:
            on_chunk()
    best_a = torch.cat([a for a, _ in found]).view(s, p, 12)
    return best_a, torch.cat([r for _, r in found]).view(s, p)


def default_code_pairs(
    photos: list[np.ndarray], n: int, seed: int, untouched: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of a restore style, the editor who only undoes the camera's errors: (jittered crop, crop),
    with a share `untouched` of them (crop, crop). The code of such pairs is the prior's default: what an
    editor without a personal model gets (choose_default picks the share)."""
    rng = np.random.default_rng(seed + 99)
    gen = torch.Generator().manual_seed(seed + 99)
    target = torch.from_numpy(random_crops(photos, n, rng, size=THUMB_SIZE))
    before = camera_jitter(target, gen, 1.0)
    keep = torch.rand(n, generator=gen) < untouched
    return torch.where(keep.view(n, 1, 1, 1), target, before), target


# What an editor without a personal model gets must leave good photos essentially alone: the default
# code's edits of untouched photos may change them by at most this much (mean dE00; bench/bench_base.py's
# goal, about what a trained eye notices side by side), on a typical photo it never saw: the bound is on
# the mean over photos with MILD_CONFIDENCE (photos differ far more than crops of one photo do).
MILD_DELTA_E = 2.5
MILD_CONFIDENCE = 0.95
DEFAULT_STRENGTHS = (1.0, 0.9, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
MAX_UNTOUCHED = 0.75  # the largest share of a restore style's befores that are left as they were
DEFAULT_UNTOUCHED = (0.0, 0.25, 0.5, 0.75)  # the restore styles a default code is chosen among


def split_photos(
    photos: list[np.ndarray], share: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(bank photos, check photos): a random `share` of the photos kept out of training to check the
    default on; with too few photos to spare one, both are all of them."""
    k = int(round(share * len(photos)))
    if k == 0 or k >= len(photos) - 1:
        return photos, photos
    order = np.random.default_rng(seed + 3).permutation(len(photos))
    return [photos[i] for i in sorted(order[k:])], [photos[i] for i in sorted(order[:k])]


def check_crops(photos: list[np.ndarray], seed: int, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Untouched crops of photos that the default is checked on, as many of each photo: (crops, the index
    of the photo each was cut from)."""
    rng = np.random.default_rng(seed + 5)
    per_photo = max(1, n // len(photos))
    crops = [random_crops([photo], per_photo, rng, size=THUMB_SIZE) for photo in photos]
    return torch.from_numpy(np.concatenate(crops)), torch.arange(len(photos)).repeat_interleave(per_photo)


def upper_bound_of_mean(per_photo: torch.Tensor, confidence: float = MILD_CONFIDENCE) -> float:
    """One-sided upper confidence bound of the mean over photos of per-photo values (Student's t, the
    photos a sample of the photos editors bring); a single photo: its value."""
    n = len(per_photo)
    mean = float(per_photo.mean())
    if n < 2:
        return mean
    return mean + float(scipy.stats.t.ppf(confidence, n - 1)) * float(per_photo.std()) / n**0.5


@torch.no_grad()
def default_strength(actor: nn.Module, crops: torch.Tensor, photo: torch.Tensor) -> float:
    """The largest strength at which the default code's edits of untouched `crops` (check_crops of photos
    the prior never trained on; `photo` says which) change a typical photo by at most MILD_DELTA_E
    (upper_bound_of_mean over the photos); it is served with the prior to editors without a personal
    model (fine-tuning calibrates its own)."""
    feats, target = features(crops), reward.srgb_to_lab(crops)
    actions = actor(feats, None)
    for strength in DEFAULT_STRENGTHS:
        change = reward.mean_delta_e(edit(crops, actions * strength), target)
        per_photo = torch.stack([change[photo == p].mean() for p in photo.unique()])
        if upper_bound_of_mean(per_photo) <= MILD_DELTA_E:
            return strength
    return 0.0


@torch.no_grad()
def choose_default(
    encoder: StyleEncoder,
    policy: StylePolicy,
    code_photos: list[np.ndarray],
    check_photos: list[np.ndarray],
    seed: int,
    n: int = 400,
) -> tuple[StyleActor, float, dict]:
    """The actor, strength and a report of what editors without a personal model get.

    Among the codes of restore styles (their pairs cut from `code_photos`) that leave 0-75 % of photos
    untouched, each served at its default_strength (mild on good photos), the one that brings the most
    camera-jittered crops closer to the crops. Both measured on `check_photos`, which the prior never
    trained on (its own photos flatter it), and never on a benchmark's.
    """
    crops, photo = check_crops(check_photos, seed, n)
    jittered = camera_jitter(crops, torch.Generator().manual_seed(seed + 6), 1.0)
    target = reward.srgb_to_lab(crops)
    no_edit = reward.mean_delta_e(jittered, target)
    best = None
    for untouched in DEFAULT_UNTOUCHED:
        actor = StyleActor(policy, encoder.encode(*default_code_pairs(code_photos, 256, seed, untouched)))
        strength = default_strength(actor, crops, photo)
        edited = edit(jittered, actor(features(jittered), None) * strength)
        closer = float((reward.mean_delta_e(edited, target) < no_edit).float().mean())
        if best is None or closer > best[2]["default_share_closer"]:
            best = (
                actor,
                strength,
                {"default_untouched": untouched, "default_share_closer": round(closer, 4)},
            )
    return best


def rechoose_default(model: PersonalModel, images: list[np.ndarray]) -> PersonalModel:
    """A trained prior with its default (code and strength) chosen again by choose_default, from the
    photos it was trained with (`images`, in the same order: the split into bank and check photos is
    drawn from its seed): for a prior trained before the rule changed. The networks are unchanged."""
    if model.metadata.get("kind") != "prior" or model.encoder is None:
        raise ValueError("not a style prior (kind 'prior' with an encoder): nothing to choose a default for")
    seed = int(model.metadata["metrics"]["seed"])
    share = float(model.metadata.get("config", {}).get("check_share", PriorConfig.check_share))
    bank_photos, check_photos = split_photos(images, share, seed)
    if len(bank_photos) != model.metadata["metrics"].get("photos"):
        raise ValueError(
            f"{len(images)} photos split into {len(bank_photos)} bank photos; the prior was trained on "
            f"{model.metadata['metrics'].get('photos')}: pass the photos it was trained with"
        )
    actor, strength, default = choose_default(
        model.encoder, model.actor.policy, bank_photos, check_photos, seed
    )
    keep = {k: v for k, v in model.metadata.items() if k not in ("model_id", "base_version", "created_at")}
    metadata = {**keep, "strength": strength, "metrics": {**model.metadata["metrics"], **default},
                "default_rechosen_from": model.metadata.get("model_id")}  # fmt: skip
    critic = FixedStyleCritic(model.critic.critic, actor.z) if model.critic is not None else None
    return PersonalModel(
        actor,
        critic,
        metadata=metadata,
        encoder=model.encoder,
        linear_prior=model.linear_prior,
        inverse=model.inverse,
    )


# ------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------


def _context(bank: _Bank, styles: torch.Tensor, cfg: PriorConfig, gen: torch.Generator, leave_out=None):
    """A random-sized set of each style's pairs for the encoder: (pair features (B, K, 3F), mask (B, K)).

    leave_out (B,): a photo of each style kept out of its context (the query being learned from), so
    that the code never carries the answer itself, as with an editor's new photos.
    """
    b, k = len(styles), cfg.context_max
    order = torch.rand(b, bank.n_photos, generator=gen).argsort(1)[:, : k + 1]
    if leave_out is not None:  # drop the left-out photo, else the last drawn one: K photos remain
        drop = (order == leave_out.unsqueeze(1)).float()
        drop[:, -1] += 1 - drop.sum(1)
        order = order[drop == 0].reshape(b, k)
    else:
        order = order[:, :k]
    sizes = torch.randint(cfg.context_min, cfg.context_max + 1, (b, 1), generator=gen)
    mask = torch.arange(k).unsqueeze(0) < sizes
    return bank.pairs[styles.unsqueeze(1), order], mask


@torch.no_grad()
def style_validation_delta_e(
    bank: _Bank, encoder: StyleEncoder, policy: StylePolicy, context: int = VAL_CONTEXT
) -> float:
    """Mean dE00 (at 64x64) of the actor's edits of each validation style's other photos, code from `context`."""
    z = encoder(bank.pairs[:, :context])
    q = bank.n_photos - context
    f = bank.feats_before[:, context:].reshape(-1, bank.feats_before.shape[-1])
    a = policy(f, z.repeat_interleave(q, 0))
    return queries_delta_e(bank, a.reshape(bank.n_styles, q, 12), context)


def _searched(
    bank: _Bank, cfg: PriorConfig, gen: torch.Generator, on_chunk=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """search_best_actions, with the rewards scored again at the training size (the search ran smaller)."""
    best_a, _ = search_best_actions(bank, cfg.search_size, cfg.search_iters, cfg.search_popsize, gen,
                                    on_chunk=on_chunk)  # fmt: skip
    si, pi = torch.meshgrid(torch.arange(bank.n_styles), torch.arange(bank.n_photos), indexing="ij")
    flat = torch.arange(bank.n_styles * bank.n_photos)
    r = _chunked(lambda k: bank.step(si.reshape(-1)[k], pi.reshape(-1)[k], best_a.reshape(-1, 12)[k]), flat)
    r = r.view(bank.n_styles, bank.n_photos)
    keep = r > 0
    return torch.where(keep.unsqueeze(-1), best_a, torch.zeros_like(best_a)), torch.where(keep, r, 0.0)


@torch.no_grad()
def queries_delta_e(bank: _Bank, actions: torch.Tensor, context: int = VAL_CONTEXT) -> float:
    """Mean dE00 (at 64x64) of actions (S, P - context, 12) for the validation queries: each style's
    photos after the first `context`, whose pairs give the code."""
    before = bank.before[:, context:].reshape(-1, THUMB_SIZE, THUMB_SIZE, 3)
    target = bank.after[:, context:].reshape(-1, THUMB_SIZE, THUMB_SIZE, 3)
    a = actions.reshape(-1, 12)
    return float(reward.mean_delta_e(edit(before, a), reward.srgb_to_lab(target)).mean())


# ------------------------------------------------------------------------------------------------------
# The linear style prior: how the linear policies of many styles are distributed
# ------------------------------------------------------------------------------------------------------


def refit_linear_prior(
    model: PersonalModel,
    images: list[np.ndarray],
    seed: int = 0,
    on_chunk: Callable[[int, int], None] | None = None,
) -> PersonalModel:
    """A style prior's model file with its linear style prior fitted (again) from `images`, the networks
    untouched: a new model_id, so personal models say which one they started from."""
    if model.encoder is None:
        raise ValueError("not a style prior (kind 'prior'): it has no encoder")
    # its own config, and today's defaults for what it predates (the linear prior's fields among them)
    saved = model.metadata.get("config", {})
    cfg = PriorConfig(**{k: v for k, v in saved.items() if k in PriorConfig.__dataclass_fields__})
    keep = {k: v for k, v in model.metadata.items() if k not in ("model_id", "base_version", "created_at")}
    metadata = {**keep, "config": asdict(cfg), "linear_prior_refitted_from": model.metadata.get("model_id")}
    linear_prior = fit_linear_prior(images, seed, cfg, on_chunk)
    return PersonalModel(model.actor, model.critic, metadata=metadata, encoder=model.encoder,
                         linear_prior=linear_prior, inverse=model.inverse)  # fmt: skip


LINEAR_SEARCH_CHUNK = 640  # pairs searched at once: 12 candidates of each, 16x16, a few hundred MB


def fit_linear_prior(
    photos: list[np.ndarray], seed: int, cfg: PriorConfig, on_chunk: Callable[[int, int], None] | None = None
) -> LinearStylePrior:
    """How styles in general answer a photo, for fine-tuning's distillation (rlcore.agent.distill).

    A bank of generated styles (their own bank, not the networks'), every pair's sliders searched with the
    editor as a black box through its style's consensus (rlcore.agent.consensus_search: the same kind of
    label fine-tuning fits for an editor), one ridge policy per style on globally standardised statistics,
    and a Gaussian over those policies (``linear_prior_from_labels``). on_chunk(done, total): progress of
    the search, which is most of the time (17 minutes on this 2-core machine for 400 x 32 pairs).
    """
    bank = make_bank(photos, cfg.linear_styles, cfg.linear_photos_per_style, seed + 13, cfg.search_size)
    n = bank.n_styles * bank.n_photos
    before = resize_u8(bank.before.reshape(n, THUMB_SIZE, THUMB_SIZE, 3), cfg.search_size)
    target = _chunked(
        reward.srgb_to_lab, resize_u8(bank.after.reshape(n, THUMB_SIZE, THUMB_SIZE, 3), cfg.search_size)
    )
    style = torch.arange(bank.n_styles).repeat_interleave(bank.n_photos)
    gen = torch.Generator().manual_seed(seed + 13)
    chunk = LINEAR_SEARCH_CHUNK
    total, done = 2 * -(-n // chunk), [0]  # chunks of the two halves

    def searched_chunk() -> None:
        done[0] += 1
        if on_chunk is not None:
            on_chunk(done[0], total)

    labels, rewards = consensus_search(before, target, cfg.linear_search_iters, cfg.search_popsize, gen,
                                       groups=style, chunk=chunk, on_chunk=searched_chunk)  # fmt: skip
    return linear_prior_from_labels(bank.feats_before.reshape(n, -1), labels, rewards, style,
                                    cfg.linear_style_penalty, cfg.linear_shrinkage)  # fmt: skip


def linear_prior_from_labels(
    feats: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    style: torch.Tensor,
    penalty: float,
    shrinkage: float,
    min_labels: int = 8,
) -> LinearStylePrior:
    """A Gaussian over linear policies, from many styles' labelled photos.

    feats (N, F) the befores' statistics, labels (N, 12) their searched actions, rewards (N,) (a label
    counts where it beats no edit), style (N,) which style each is of. Each style with `min_labels` such
    labels gets a ridge policy W (F + 1, 12) (`penalty`, not on the bias) on statistics standardised over
    all N; their mean, and the inverse of their covariance shrunk by `shrinkage` towards its diagonal
    (a few hundred styles cannot pin down 744 x 744 numbers), scaled to a mean diagonal of 1.
    """
    x = feats.double()
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    f = xs.shape[1]
    ridge = penalty * torch.eye(f, dtype=torch.float64)
    ridge[-1, -1] = 0
    policies = []
    for s in style.unique():
        fit = (style == s) & (rewards > 0)
        if int(fit.sum()) >= min_labels:
            w = torch.linalg.solve(
                xs[fit].T @ xs[fit] + ridge, xs[fit].T @ labels[fit].double()
            )  # (F + 1, 12)
            policies.append(w.T.reshape(-1))  # ordered (slider, statistic)
    if len(policies) < 2:
        raise ValueError(f"need at least 2 styles with {min_labels} labels that beat no edit")
    w = torch.stack(policies)
    cov = torch.cov(w.T)
    cov = (1 - shrinkage) * cov + shrinkage * torch.diag(torch.diag(cov))
    cov = cov + 1e-4 * float(torch.diag(cov).mean()) * torch.eye(len(cov), dtype=torch.float64)
    precision = torch.linalg.inv(cov)
    precision = (precision + precision.T) / 2
    prior = LinearStylePrior(feats.shape[1], labels.shape[1])
    prior.feat_mean.copy_(mean.float())
    prior.feat_std.copy_(std.float())
    prior.mean.copy_(w.mean(0).view(labels.shape[1], f).T.float())
    prior.precision.copy_((precision / torch.diag(precision).mean()).float())
    return prior


def train_prior(
    images: list[np.ndarray],
    seconds: float = 3600.0,
    seed: int = 0,
    *,
    max_steps: int | None = None,
    config: PriorConfig | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    source: str = "",
):
    """Learns the style prior from photos and generated styles; returns a FinetuneResult (kind 'prior')."""
    cfg = copy.deepcopy(config or PriorConfig.for_budget(seconds if max_steps is None else 3600.0))
    with torch_threads(cfg.threads):
        return _train_prior(images, seconds, seed, max_steps, cfg, on_progress, source, time.monotonic())


def _train_prior(images, seconds, seed, max_steps, cfg: PriorConfig, on_progress, source, t_start):
    if not (cfg.context_min <= cfg.context_max < cfg.photos_per_style and VAL_CONTEXT < cfg.photos_per_style):
        raise ValueError(
            f"need context_min <= context_max < photos_per_style, and {VAL_CONTEXT} < photos_per_style"
        )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    bank_photos, check_photos = split_photos(images, cfg.check_share, seed)
    train = make_bank(
        bank_photos, cfg.n_styles, cfg.photos_per_style, seed, cfg.env_size, cfg.restore_fraction
    )
    val = make_bank(
        bank_photos, cfg.val_styles, cfg.photos_per_style, seed + 7, cfg.env_size, cfg.restore_fraction
    )
    encoder = StyleEncoder(N_FEATURES, cfg.encoder_hidden, cfg.style_dim)
    policy = StylePolicy(N_FEATURES, cfg.style_dim, cfg.actor_hidden)
    critic = StyleCritic(N_FEATURES, cfg.style_dim, cfg.critic_hidden)
    flat = train.feats_before.reshape(-1, N_FEATURES)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-3)
    for m in (policy, critic):
        m.feat_mean.copy_(mean)
        m.feat_std.copy_(std)
    pflat = train.pairs.reshape(-1, train.pairs.shape[-1])
    encoder.pair_mean.copy_(pflat.mean(0))
    encoder.pair_std.copy_(pflat.std(0).clamp_min(1e-3))
    opt_a = torch.optim.Adam([*policy.parameters(), *encoder.parameters()], lr=cfg.lr_actor)
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.lr_critic)

    # replay: (style, photo, action, reward); the context is drawn afresh at every update
    cap = cfg.buffer_size
    buf_s = torch.zeros(cap, dtype=torch.long)
    buf_p = torch.zeros(cap, dtype=torch.long)
    buf_a = torch.zeros(cap, 12)
    buf_r = torch.zeros(cap)

    def searching() -> None:  # the search takes minutes: the bar moves with the clock meanwhile
        if on_progress is not None:
            f_ = min(1.0, (time.monotonic() - t_start) / max(1e-6, seconds)) if max_steps is None else 0.0
            on_progress(Progress(0, f_, seconds - (time.monotonic() - t_start), cfg.eps_start, float("nan"),
                                 float("nan")))  # fmt: skip

    best_a, best_r = _searched(train, cfg, gen, searching)
    val_best_a, _ = _searched(val, cfg, gen)
    val_searched = queries_delta_e(val, val_best_a[:, VAL_CONTEXT:])
    ptr = size = step = 0
    val_no_edit = float(val.baseline.mean())  # at env size; the curve below is at 64x64
    val_no_edit_64 = queries_delta_e(val, torch.zeros_like(val_best_a[:, VAL_CONTEXT:]))
    best_val = style_validation_delta_e(val, encoder, policy)
    best_state = copy.deepcopy((encoder.state_dict(), policy.state_dict(), critic.state_dict()))
    best_step, curve = 0, [(0, best_val)]
    last_reward = float("nan")
    run_start = time.monotonic()

    def fraction() -> float:
        if max_steps is not None:
            return min(1.0, step / max(1, max_steps))
        return min(1.0, (time.monotonic() - t_start) / max(1e-6, seconds))

    last_progress = 0.0

    def loop_fraction() -> float:  # of the training loop alone: building the banks came first
        if max_steps is not None:
            return fraction()
        return min(1.0, (time.monotonic() - run_start) / max(1e-6, seconds - (run_start - t_start)))

    while fraction() < 1.0:
        frac = loop_fraction()
        # 1-2. styles, their codes, query pairs and epsilon-greedy actions around actor(s, z)
        eps = cfg.eps_end + (cfg.eps_start - cfg.eps_end) * max(0.0, 1.0 - frac / cfg.eps_decay_fraction)
        styles = torch.randint(train.n_styles, (cfg.styles_per_batch,), generator=gen)
        si = styles.repeat_interleave(cfg.queries_per_style)
        pi = torch.randint(train.n_photos, (len(si),), generator=gen)
        with torch.no_grad():
            ctx, mask = _context(train, styles, cfg, gen)
            z = encoder(ctx, mask).repeat_interleave(cfg.queries_per_style, 0)
            a = policy(train.feats_before[si, pi], z)
        n = len(si)
        around_best = (torch.rand(n, 1, generator=gen) < cfg.p_around_best) & (best_r[si, pi] > 0).unsqueeze(
            1
        )
        a = torch.where(around_best, best_a[si, pi], a)
        sigma = cfg.noise_min * (cfg.noise_max / cfg.noise_min) ** torch.rand(n, 1, generator=gen)
        a = a + sigma * torch.randn(n, 12, generator=gen)
        a = torch.where(torch.rand(n, 1, generator=gen) < eps, torch.rand(n, 12, generator=gen) * 2 - 1, a)
        a = to_sliders(a) / 100.0

        # 3. the editor (black box) and the reward, into the replay buffer
        r = train.step(si, pi, a)
        last_reward = float(r.mean())
        pos = (torch.arange(n) + ptr) % cap
        buf_s[pos], buf_p[pos], buf_a[pos], buf_r[pos] = si, pi, a, r
        better = r > best_r[si, pi]
        best_a[si[better], pi[better]], best_r[si[better], pi[better]] = a[better], r[better]
        ptr, size = (ptr + n) % cap, min(cap, size + n)

        # 4. critic: Q(s, z, a) on observed rewards (codes from fresh contexts, not trained through Q)
        for _ in range(cfg.critic_updates):
            j = torch.randint(size, (cfg.batch_size,), generator=gen)
            with torch.no_grad():
                ctx, mask = _context(train, buf_s[j], cfg, gen, buf_p[j])
                zj = encoder(ctx, mask)
            q = critic(train.feats_before[buf_s[j], buf_p[j]], zj, buf_a[j])
            loss_c = F.huber_loss(q, buf_r[j], delta=cfg.huber_delta)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()

        # 5. actor and encoder: maximise Q, imitate the best confirmed action, regress known sliders.
        # During the warm start the critic is still learning: imitation only, over all of the bank's pairs.
        warm = frac < cfg.warm_fraction
        if warm:
            sj = torch.randint(train.n_styles, (cfg.batch_size,), generator=gen)
            pj = torch.randint(train.n_photos, (cfg.batch_size,), generator=gen)
        else:
            j = torch.randint(size, (cfg.batch_size,), generator=gen)
            sj, pj = buf_s[j], buf_p[j]
        ctx, mask = _context(train, sj, cfg, gen, pj)
        zj = encoder(ctx, mask)
        f = train.feats_before[sj, pj]
        act = policy(f, zj, cfg.actor_dropout, cfg.feat_noise)
        q = torch.zeros(()) if warm else critic(f, zj, act)
        imitate = ((act - best_a[sj, pj]) ** 2).sum(1) * (best_r[sj, pj] > 0)
        known = train.has_sliders[sj, pj]
        supervised = ((act - torch.nan_to_num(train.sliders[sj, pj])) ** 2).sum(1) * known
        loss_a = -q.mean() + cfg.self_imitation * imitate.mean() + cfg.supervision * supervised.mean()
        opt_a.zero_grad(set_to_none=True)
        loss_a.backward()
        # a critic still wrong about some style must not throw the shared policy far in one step
        nn.utils.clip_grad_norm_([*policy.parameters(), *encoder.parameters()], cfg.max_grad_norm)
        opt_a.step()
        step += 1

        # 6. validation on unseen styles; keep the best
        if step % cfg.val_every == 0:
            v = style_validation_delta_e(val, encoder, policy)
            curve.append((step, v))
            if v < best_val:
                best_val, best_step = v, step
                best_state = copy.deepcopy((encoder.state_dict(), policy.state_dict(), critic.state_dict()))
        if max_steps is not None and step >= max_steps:
            break
        if on_progress is not None and time.monotonic() - last_progress >= 0.5:
            last_progress = time.monotonic()
            f_ = fraction()
            eta = (time.monotonic() - t_start) * (1 - f_) / f_ if f_ > 0 else float("nan")
            on_progress(Progress(step, f_, eta, eps, last_reward, curve[-1][1]))

    encoder.load_state_dict(best_state[0])
    policy.load_state_dict(best_state[1])
    critic.load_state_dict(best_state[2])
    actor, strength, default = choose_default(encoder, policy, bank_photos, check_photos, seed)
    linear_prior = None
    if cfg.linear_styles:
        fit_start = time.monotonic()

        def fitting(done: int, total: int) -> None:  # after the budget: the bar stays full, the ETA counts
            if on_progress is not None:
                eta = (time.monotonic() - fit_start) * (total - done) / done
                on_progress(Progress(step, 1.0, eta, cfg.eps_end, last_reward, best_val))

        linear_prior = fit_linear_prior(bank_photos, seed, cfg, fitting)
    if on_progress is not None:
        on_progress(Progress(step, 1.0, 0.0, cfg.eps_end, last_reward, best_val))
    metrics = {
        "val_delta_e_no_edit_env": round(val_no_edit, 4),
        "val_delta_e_no_edit": round(val_no_edit_64, 4),  # at 64x64, as val_delta_e_prior
        "val_delta_e_prior": round(best_val, 4),
        "val_delta_e_searched": round(val_searched, 4),
        "val_gap_closed": round((val_no_edit_64 - best_val) / max(1e-6, val_no_edit_64 - val_searched), 4),
        "val_styles": cfg.val_styles,
        "train_styles": cfg.n_styles,
        "photos_per_style": cfg.photos_per_style,
        "steps": step,
        "env_steps": step * cfg.styles_per_batch * cfg.queries_per_style,
        "best_step": best_step,
        "photos": len(bank_photos),
        "check_photos": len(check_photos) if check_photos is not bank_photos else 0,
        "seconds": round(time.monotonic() - t_start, 2),
        "train_seconds": round(time.monotonic() - run_start, 2),
        "seed": seed,
        **default,
    }
    model = PersonalModel(
        actor,
        FixedStyleCritic(critic, actor.z),
        metadata={
            "kind": "prior",
            "metrics": metrics,
            "config": asdict(cfg),
            "source": source,
            "strength": strength,
        },
        encoder=encoder,
        linear_prior=linear_prior,
    )
    return FinetuneResult(model=model, metrics=metrics, curve=curve)
