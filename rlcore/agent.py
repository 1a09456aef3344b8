"""The actor-critic agent that learns an editor's style from before/after pairs (CleanRL style: one file).

The problem is a one-step (contextual bandit) reinforcement-learning problem:

* state  s: the before photo as a 64x64 thumbnail. The networks see it as global colour statistics
  (RGB / CIELAB percentiles, a lightness histogram, chroma, grey-world balance: ``features``) plus,
  for the actor, a tiny convolution over a 16x16 copy (switched off when fine-tuning: Config.use_conv).
* action a: the editor's 12 sliders; the actor outputs tanh(.) in [-1, 1], the editor gets round(100 a).
* environment: ``rlcore.editor.apply_batch`` (a black box, never differentiated).
* reward r: ``rlcore.reward.reward(before, edited, target, weights)`` = mean dE00(before, target) -
  mean dE00(edited, target), optionally face-weighted per pixel.

Training loop (``_train``), repeated every iteration:

1. draw a batch of states from the pool (training pairs and camera-jittered copies of their befores:
   under-exposed, colour-cast, low-contrast ...; a copy's target is its pair's after, moved by what a
   style emulator fitted to the pairs says the style would do differently: ``rlcore.emulator``);
2. act: the actor's action, or with probability epsilon (linearly decaying) a uniformly random action;
   plus small Gaussian noise of a random scale;
3. run the editor on the whole batch and score it with the reward; store (state, action, reward) in a
   replay buffer;
4. critic step(s): regress Q(s, a) on the stored rewards (Huber loss); Q(s, 0) = 0 by construction;
5. actor step: maximise Q(s, actor(s)) (DDPG-like deterministic policy gradient) with an L2 pull
   towards the starting (base) weights;
6. every few steps: held-out validation dE00 of the actor's edits; keep the best actor, stop early when
   it stops improving; checkpoint for resumption every few seconds.

``train_base`` runs the same loop on distort-and-recover pairs (target = a photo, before = the photo after
random editor adjustments and camera-like exposure / white-balance jitter); ``finetune`` starts from the
base actor and critic and learns one editor's style.

What the loop builds on lives below it, each in its own module: the state's statistics
(``rlcore.features``), the actor and critic (``rlcore.networks``), the model file a run returns
(``rlcore.modelfile``), the style emulator behind augmented targets (``rlcore.emulator``). A run's
resumable checkpoint (optimisers, replay buffer, RNG states) is the loop's own business and stays here.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rlcore import editor, emulator, reward
from rlcore.color import linear_to_srgb, srgb_to_linear
from rlcore.data import PairSet, random_crops
from rlcore.editor import LUMA
from rlcore.features import KEY_FEATURES, N_FEATURES, conv_input, features, resize_u8
from rlcore.files import write_atomic
from rlcore.imageio import THUMB_SIZE
from rlcore.modelfile import BASE_MODEL_PATH, PersonalModel, load_model
from rlcore.networks import (
    Actor,
    Critic,
    DistilledActor,
    FixedStyleCritic,
    InverseEditor,
    LinearPolicy,
    LinearStylePrior,
    StyleActor,
    blended,
    hedged,
    torch_threads,
)

__all__ = [
    "Config",
    "PairSet",
    "Progress",
    "Cancelled",
    "FinetuneResult",
    "finetune",
    "train_base",
    "validation_delta_e",
    "train_val_split",
    "camera_jitter",
    "edit",
    "to_sliders",
]

# ------------------------------------------------------------------------------------------------------
# Hyperparameters
# ------------------------------------------------------------------------------------------------------


@dataclass
class Config:
    # networks (stored in the model file; a checkpoint's own sizes win when fine-tuning)
    actor_hidden: int = 128
    critic_hidden: int = 256
    conv_channels: int = 16
    # environment
    env_size: int = 32  # thumbnail side the reward is computed on while training (validation: 64)
    batch_envs: int = 64  # environment steps per iteration
    # exploration: epsilon-greedy with linear decay, plus Gaussian noise of a log-uniform random scale
    eps_start: float = 0.3
    eps_end: float = 0.02
    eps_decay_fraction: float = 0.6  # of the budget (steps or seconds)
    noise_min: float = 0.01  # action units (1 = 100 slider points)
    noise_max: float = 0.15
    p_around_best: float = 0.5  # share of the batch explored around the best confirmed action instead
    exploration: str = "actor"  # "actor" (the seed's method) or "uniform" (always random: the baseline)
    # replay buffer and updates
    buffer_size: int = 100_000
    batch_size: int = 256
    critic_updates: int = 4
    actor_updates: int = 1
    lr_critic: float = 1e-3
    lr_actor: float = 5e-4
    huber_delta: float = 2.0
    l2_to_start: float = 1e-3  # pull of the actor towards its starting (base) weights
    self_imitation: float = 10.0  # weight of the pull towards the best action seen so far for each state
    weight_decay: float = 0.0
    # distillation after fine-tuning: the served policy is the mean of the RL actor and a linear policy
    # fitted (ridge) to the best action the search confirmed for every state; the ridge penalty is picked
    # on validation. Linear in the photo's statistics, it carries what the pairs say to other photos
    # better than the MLP alone (docs/agent.md, "Distillation"); False serves the RL actor alone.
    distill: bool = True
    distill_mix: float = 0.5  # the linear policy's share of the served action
    # before RL, a short black-box search (search_actions) per training pair gives each original before
    # a first confirmed best action: RL explores around it and imitates it, distillation (and the instant
    # model) fits the linear policy to it. 0 iterations: start from "no edit" as the seed does.
    search_iters: int = 48
    search_popsize: int = 12
    search_size: int = 16  # global edits have nearly the same best sliders at any size: search small
    # ... in two halves: from no edit, then every pair again from the editor's consensus (the median of the
    # first half's actions), with steps of consensus_sigma, and the jittered copies likewise: consistent
    # labels, where a search from no edit may reach one photo's look by exposure and the next one's by
    # brightness, which a linear policy cannot carry to other photos. False: one search from no edit.
    search_consensus: bool = True
    consensus_sigma: float = 0.1
    # ... but where the base carries the editor's inverse (rlcore.inverse), every pair's search starts from
    # its answer instead, the same sliders for the same change on every photo, and refines it for this
    # many generations with steps of consensus_sigma (docs/agent.md, stop 47)
    search_from_inverse: bool = True
    inverse_search_iters: int = 24
    # the instant model (seconds=0) searches camera-jittered copies of each before too (starting from the
    # before's searched action): the linear policy then learns how the style answers a photo's exposure,
    # colour cast and contrast, not only the training photos' own answers
    instant_copies: int = 8
    instant_copy_iters: int = 12
    instant_states_max: int = 512  # fewer copies per pair when there are many pairs (search: ~15 ms a state)
    # ... and scores each form on at most this many pairs (validation and folds sampled alike): the scoring's
    # edits are most of its cost with many pairs, and a few hundred pairs choose a form as surely as more
    instant_scored_max: int = 200
    # ... edited and compared at this side, RL's reward's (the model still reads the 64x64 thumbnails): the
    # scoring's edits cost as their pixels, and at 32x32 they rank the forms as at 64x64 but for near-ties
    # (16x16 flips more of them; docs/agent.md, stop 42)
    instant_score_size: int = 32
    # the instant model picks its distillation form on the validation pairs and on this many folds of
    # similar training photos (similar_photo_folds); not after RL, whose actor has seen every fold
    distill_folds: int = 3
    # ... and may fit its linear policy on the few statistics photo-dependent edits answer to (brightness,
    # black and white points, cast, colourfulness; features.KEY_FEATURES), where that is clearly better
    distill_key_statistics: bool = True
    # ... and fits each form a second time, weighing each state's label error by how much it changes the
    # edited photo (slider_metric): sliders that barely change a photo leave its label arbitrary, and a
    # fit need not follow that (chosen like every other form: it helps with many pairs, less with few)
    distill_metric: bool = True
    # ... and a third time shrunk towards how generated styles in general answer a photo (the base's
    # LinearStylePrior, where it has one) instead of towards a preset: with a few pairs, a prior's answer
    distill_prior: bool = True
    # ... and chooses its strength on those folds too, not on the validation pairs alone (a fifth of a few)
    calibrate_on_folds: bool = True
    # where RL's policy validates clearly better than the instant model, serve rl_share of it and the rest
    # the instant model's: the validation pairs may show the training photos again (crops, a shoot), so a
    # clear win on them can still be a loss on other photos (measured: -9 to +9 points of the gap), and the
    # mean of two policies errs less than either (1, or distill False: RL's policy alone)
    rl_share: float = 0.5
    # regularisation of the actor (fine-tuning has ~40 pairs of a few photos; the actor must generalise)
    actor_dropout: float = 0.1  # dropout on the actor's inputs and hidden layers in its update step
    feat_noise: float = 0.2  # Gaussian noise on the standardised features in the actor's update step
    use_conv: bool = False  # fine-tuning: False zeroes the conv branch (it overfits to the few photos)
    # data and augmentation
    val_fraction: float = 0.2
    aug_copies: int = 16  # camera-jittered copies of each training before ...
    aug_states_max: int = 1024  # ... but fewer when pairs x copies would exceed this
    aug_strength: float = 1.0
    # ... but the instant model's copies, with fewer than few_pairs training pairs, only few_pairs_jitter as
    # far: the emulator that moves their targets has seen less of the style, and the fit has fewer photos
    # of its own to weigh against them (docs/agent.md, stop 35)
    few_pairs: int = 24
    few_pairs_jitter: float = 0.5
    aug_target: str = "emulated"  # their targets: "emulated" (rlcore.emulator) or "unchanged" (the after)
    emulator_size: int = 16  # side of the copies the emulator's loss is measured on ...
    emulator_steps: int = 300  # ... and its Adam steps
    p_original: float = 0.3  # share of unaugmented befores among sampled states
    # validation, early stopping, checkpointing
    val_every: int = 10  # iterations
    patience: int = 100  # validations without improvement before stopping
    min_fraction: float = 0.3  # never stop early before this fraction of the budget
    checkpoint_every_s: float = 5.0
    reserve_s: float = 1.0  # seconds of the budget kept for the final evaluation
    threads: int = 1  # torch threads while training (0: leave as is). Small ops: 1 is fastest, and
    # 2 threads on a 2-core machine with any other load slow every step down 20x (OpenMP barriers)


# ------------------------------------------------------------------------------------------------------
# Environment: the editor and the reward, batched
# ------------------------------------------------------------------------------------------------------


def to_sliders(actions: torch.Tensor) -> torch.Tensor:
    """Actions in [-1, 1] -> integer slider values in [-100, 100] (float tensor of integers)."""
    return (actions.clamp(-1, 1) * 100).round()


def edit(images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The environment: the editor (a black box) applied with actions in [-1, 1]."""
    return editor.apply_batch(images, to_sliders(actions))


# ------------------------------------------------------------------------------------------------------
# Augmentation: camera-like exposure / white balance / contrast / saturation jitter (independent of the
# editor's sliders), used for the augmented befores and for distort-and-recover
# ------------------------------------------------------------------------------------------------------


def camera_jitter(images: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random under/over-exposure, colour cast, low contrast and saturation change of uint8 (N, H, W, 3)."""
    n = images.shape[0]

    def u(lo, hi):
        return (torch.rand(n, 1, 1, 1, generator=gen) * (hi - lo) + lo) * strength

    lin = srgb_to_linear(images)
    ev = u(-1.5, 0.8)  # mostly under-exposed, as cameras get it wrong
    temp, tint = u(-0.25, 0.25), u(-0.1, 0.1)
    gains = torch.cat([torch.exp(temp), torch.exp(tint), torch.exp(-temp)], -1)
    lin = lin * (2.0**ev) * gains
    s = linear_to_srgb(lin).clamp(0, 1)
    contrast = 1.0 + u(-0.35, 0.1)
    s = 0.5 + (s - 0.5) * contrast
    luma = (s * torch.tensor(LUMA)).sum(-1, keepdim=True)  # the editor's own luma (Rec. 709)
    sat = 1.0 + u(-0.4, 0.25)
    s = luma + (s - luma) * sat
    return (s.clamp(0, 1) * 255).round().to(torch.uint8)


def random_editor_actions(
    n: int, gen: torch.Generator, n_active: int = 3, scale: float = 0.35
) -> torch.Tensor:
    """Sparse random slider settings: n_active random sliders set to N(0, scale), the rest 0."""
    a = (torch.randn(n, 12, generator=gen) * scale).clamp(-1, 1)
    keep = torch.rand(n, 12, generator=gen).argsort(1) < n_active
    return a * keep


SEARCH_STEP = 0.3  # search_actions' first step size from no edit, in action units (30 slider points)


# edits a search makes at once: a few MB of temporaries each; all of a thousand pairs' candidates at once
# (hundreds of MB) made the search 2.7x slower per pair at 3,000 pairs than at 200 (page faults)
SEARCH_EDITS_AT_ONCE = 2048


@torch.no_grad()
def search_actions(
    before: torch.Tensor,
    target_lab: torch.Tensor,
    start: torch.Tensor,
    iters: int,
    popsize: int,
    gen: torch.Generator,
    weights: torch.Tensor | None = None,
    sigma0: float = SEARCH_STEP,
    on_generation: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best action found for each pair by a black-box search with the editor, and its reward.

    before uint8 (N, S, S, 3), target_lab (N, S, S, 3), start (N, 12) actions to begin from, weights
    (N, S, S) or None. An elitist (1 + lambda) evolution strategy per pair, all pairs in one batch, with a
    success-driven step size starting at sigma0 (action units: 0.1 = 10 slider points). Never worse than
    `start` or no edit (reward 0): returns (N, 12), (N,). on_generation() is called after each of the
    `iters` generations (progress, cancellation).
    """
    n = len(before)
    no_edit = reward.mean_delta_e(before, target_lab, weights)

    def delta_e(rows: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        w = None if weights is None else weights[rows]
        return reward.mean_delta_e(edit(before[rows], actions), target_lab[rows], w)

    def rewards(actions: torch.Tensor) -> torch.Tensor:  # (N, K, 12) -> (N, K)
        k = actions.shape[1]
        rows, flat = torch.arange(n).repeat_interleave(k), actions.reshape(-1, 12)
        step = SEARCH_EDITS_AT_ONCE
        found = [delta_e(rows[i : i + step], flat[i : i + step]) for i in range(0, len(flat), step)]
        return no_edit.unsqueeze(1) - torch.cat(found).view(n, k)

    start = to_sliders(start) / 100.0
    best_r = rewards(start.unsqueeze(1))[:, 0]
    best = torch.where((best_r > 0).unsqueeze(1), start, torch.zeros_like(start))
    best_r = best_r.clamp_min(0.0)
    sigma = torch.full((n, 1, 1), sigma0)
    for _ in range(iters):
        cand = to_sliders(best.unsqueeze(1) + sigma * torch.randn(n, popsize, 12, generator=gen)) / 100.0
        r = rewards(cand)
        top_r, top = r.max(1)
        improved = top_r > best_r
        best = torch.where(improved.unsqueeze(1), cand[torch.arange(n), top], best)
        best_r = torch.where(improved, top_r, best_r)
        sigma = (sigma * torch.where(improved, 1.25, 0.75).view(n, 1, 1)).clamp(0.02, 0.6)
        if on_generation is not None:
            on_generation()
    return best, best_r


@torch.no_grad()
def consensus_search(
    before: torch.Tensor,
    target_lab: torch.Tensor,
    iters: int,
    popsize: int,
    gen: torch.Generator,
    weights: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    sigma: float = 0.1,
    chunk: int | None = None,
    on_chunk: Callable[[], None] | None = None,
    on_generation: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """search_actions in two halves: from no edit, then every pair again from its editor's consensus (the
    median of the first half's actions that beat no edit) with steps of `sigma`: each label is then the
    edit nearest the consensus that reaches its after, the same sliders doing the same work on every photo.

    groups (N,) long: which editor (style) each pair is of (None: all one editor); chunk: pairs searched
    at once (memory: popsize edits of each), on_chunk() called after each, on_generation() after each
    generation of each chunk (``search_actions``). Returns (N, 12), (N,) as search_actions.
    """
    n = len(before)
    groups = torch.zeros(n, dtype=torch.long) if groups is None else groups
    step = n if chunk is None else chunk

    def search(start: torch.Tensor, k: int, sigma0: float) -> tuple[torch.Tensor, torch.Tensor]:
        found = []
        for i in range(0, n, step):
            w = None if weights is None else weights[i : i + step]
            found.append(search_actions(before[i : i + step], target_lab[i : i + step], start[i : i + step], k,
                                        popsize, gen, w, sigma0, on_generation))  # fmt: skip
            if on_chunk is not None:
                on_chunk()
        return torch.cat([a for a, _ in found]), torch.cat([r for _, r in found])

    first = iters // 2
    a, r = search(torch.zeros(n, 12), first, SEARCH_STEP)
    consensus = torch.zeros(n, 12)
    for g in groups.unique():
        members, confirmed = groups == g, (groups == g) & (r > 0)
        if bool(confirmed.any()):
            consensus[members] = a[confirmed].median(0).values
    return search(consensus, iters - first, sigma)


SLIDER_METRIC_STEP = 0.05  # slider_metric's finite-difference step, in action units (5 slider points)


@torch.no_grad()
def slider_metric(
    before: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor | None = None, floor: float = 1e-3
) -> torch.Tensor:
    """How far each direction of slider change moves each edited photo, near `actions`: (N, 12, 12).

    JᵀJ of the edited photo's CIELAB pixels (Jacobian J by central differences of the editor, a black
    box) per pixel, scaled to trace 12 (the plain fit's identity), so that a label error costs
    (a - label)ᵀ M (a - label): errors along sliders that barely change a photo (whites on a dark photo,
    exposure traded against brightness) cost little, and a fit need not follow what the search left
    arbitrary there. `floor` mixes in that much of the identity: a slider that changes none of the
    photos still has a determined fit. before uint8 (N, S, S, 3), actions (N, 12), weights (N, S, S).
    """
    at_once = max(1, SEARCH_EDITS_AT_ONCE // 24)  # states, 24 edits each
    if len(before) > at_once:
        return torch.cat([
            slider_metric(before[i : i + at_once], actions[i : i + at_once],
                          None if weights is None else weights[i : i + at_once], floor)
            for i in range(0, len(before), at_once)
        ])  # fmt: skip
    n = len(before)
    step = SLIDER_METRIC_STEP * torch.eye(12)
    probes = torch.cat([actions[:, None] + step, actions[:, None] - step], 1).clamp(-1, 1)  # (N, 24, 12)
    lab = reward.srgb_to_lab(edit(before.repeat_interleave(24, 0), probes.reshape(-1, 12)))
    lab = lab.view(n, 24, -1, 3)
    span = (probes[:, :12] - probes[:, 12:]).diagonal(dim1=1, dim2=2).clamp_min(1e-6)  # (N, 12) at the edges
    jac = (lab[:, :12] - lab[:, 12:]) / span[:, :, None, None]  # (N, 12, S*S, 3)
    if weights is not None:
        w = weights.reshape(n, 1, -1, 1)
        jac = jac * (w / w.mean(2, keepdim=True).clamp_min(1e-12)).sqrt()
    jac = jac.reshape(n, 12, -1).double()
    metric = jac @ jac.transpose(1, 2)
    trace = metric.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-12)
    metric = metric * (12.0 / trace)[:, None, None]
    return ((1 - floor) * metric + floor * torch.eye(12, dtype=torch.float64)).float()


# ------------------------------------------------------------------------------------------------------
# Training data: the pool of states (befores, possibly augmented) and their targets
# ------------------------------------------------------------------------------------------------------


def _resize_w(w: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if w is None or w.shape[1] == size:
        return w
    return F.adaptive_avg_pool2d(w[:, None], size)[:, 0].contiguous()


def _model_inputs(before: torch.Tensor, view: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """What the networks see of states: the features and the convolution's input of the whole photo (the
    view, PairSet.view) where there is one, else of the before."""
    seen = before if view is None else view
    return features(seen), conv_input(seen)


@dataclass
class _Pool:
    before: torch.Tensor  # uint8 (P, 64, 64, 3): states
    pair: torch.Tensor  # long (P,): index of the target
    original: torch.Tensor  # bool (P,): unaugmented before
    target: torch.Tensor  # uint8 (T, 64, 64, 3)
    weights: torch.Tensor | None  # float (T, 64, 64)
    env_size: int
    view: torch.Tensor | None = None  # uint8 (P, 64, 64, 3): what the model sees of each state (PairSet.view)

    def __post_init__(self):
        self.feats, self.conv = _model_inputs(self.before, self.view)
        self.before_env = resize_u8(self.before, self.env_size)
        self.weights_env = _resize_w(self.weights, self.env_size)
        # rlcore.reward.reward(before, edited, target, w) = baseline - mean_delta_e(edited, target_lab, w):
        # the target's Lab and the unedited baseline are computed once per state instead of every step.
        self.target_lab_env = reward.srgb_to_lab(resize_u8(self.target, self.env_size))
        w = None if self.weights_env is None else self.weights_env[self.pair]
        self.baseline = reward.mean_delta_e(self.before_env, self.target_lab_env[self.pair], w)
        self.idx_original = torch.nonzero(self.original).squeeze(1)
        self.idx_augmented = torch.nonzero(~self.original).squeeze(1)

    def __len__(self):
        return self.before.shape[0]

    def head(self, n_states: int) -> _Pool:
        """The pool's first n_states states (the originals, then whole rounds of copies: _augment_pool's
        order), with the same targets. What __post_init__ computed per state is sliced, not computed again."""
        if n_states >= len(self):
            return self
        head = copy.copy(self)
        for name in ("before", "pair", "original", "view", "feats", "conv", "before_env", "baseline"):
            value = getattr(self, name)
            setattr(head, name, None if value is None else value[:n_states])
        head.idx_original = self.idx_original[self.idx_original < n_states]
        head.idx_augmented = self.idx_augmented[self.idx_augmented < n_states]
        return head

    @property
    def source(self) -> torch.Tensor:
        """long (P,): the training pair each state was made from (``_augment_pool`` puts the originals
        first, then each round of jittered copies in the same order)."""
        return torch.arange(len(self)) % len(self.idx_original)

    def sample(self, n: int, gen: torch.Generator, p_original: float) -> torch.Tensor:
        if len(self.idx_augmented) == 0 or len(self.idx_original) == 0:
            return torch.randint(len(self), (n,), generator=gen)
        orig = torch.rand(n, generator=gen) < p_original
        i_o = self.idx_original[torch.randint(len(self.idx_original), (n,), generator=gen)]
        i_a = self.idx_augmented[torch.randint(len(self.idx_augmented), (n,), generator=gen)]
        return torch.where(orig, i_o, i_a)

    def step(self, idx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Rewards of editing states idx with actions (the environment, batched)."""
        t = self.pair[idx]
        w = None if self.weights_env is None else self.weights_env[t]
        edited = edit(self.before_env[idx], actions)
        return (self.baseline[idx] - reward.mean_delta_e(edited, self.target_lab_env[t], w)).float()


@dataclass
class _Val:
    before: torch.Tensor  # uint8 (V, 64, 64, 3)
    target: torch.Tensor
    weights: torch.Tensor | None
    view: torch.Tensor | None = None  # what the model sees of each before (PairSet.view)

    def __post_init__(self):
        self.feats, self.conv = _model_inputs(self.before, self.view)
        self.target_lab = reward.srgb_to_lab(self.target)

    @torch.no_grad()
    def per_pair(self, actor: Actor | None, strength: float = 1.0) -> torch.Tensor:
        if actor is None or strength == 0:
            edited = self.before
        else:
            edited = edit(self.before, actor(self.feats, self.conv) * strength)
        return reward.mean_delta_e(edited, self.target_lab, self.weights)

    def delta_e(self, actor: Actor | None, strength: float = 1.0) -> float:
        """Mean (weighted) dE00 of the actor's edits (None: no edit) to the targets, at the pairs' size."""
        return float(self.per_pair(actor, strength).mean())

    def __len__(self):
        return self.before.shape[0]

    def sample(self, share: float, seed: int) -> _Val:
        """A share of the pairs (at least one), a sample fixed by the seed; itself for a share of 1."""
        n = max(1, math.ceil(share * len(self)))
        if n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed * 7919 + 37).choice(len(self), n, replace=False))
        parts = (self.before, self.target, self.weights, self.view)
        return _Val(*(None if t is None else t[torch.from_numpy(keep)] for t in parts))

    def resized(self, size: int) -> _Val:
        """The same pairs edited and scored at size x size; the model still sees the full thumbnails."""
        if size == self.before.shape[1]:
            return self
        # feats and conv, what the model reads, stay the full thumbnails': copied, not computed again
        small = copy.copy(self)
        small.before, small.target = resize_u8(self.before, size), resize_u8(self.target, size)
        small.weights = _resize_w(self.weights, size)
        small.view = self.before if self.view is None else self.view
        small.target_lab = reward.srgb_to_lab(small.target)
        return small


# Global strengths tried on validation after fine-tuning; 0 is "no edit", so a published model never
# validates worse than leaving the photos alone, on any machine and under any load.
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
STRENGTH_MARGIN = 0.01  # dE00 a strength other than 1 must win by, at the least
# ... on this many pairs at the least: the standard error of two or three pairs' gains says nothing
STRENGTH_MIN_PAIRS = 5


def calibrate_strength(
    val: _Val, actor: Actor, other_photos: Sequence[tuple[Actor | None, _Val]] = ()
) -> tuple[float, dict[float, float]]:
    """The global strength (scaling every slider) to publish, and the validation dE00 of every strength tried.

    Strength 1 (the actor as trained) is kept unless the actor is worse than no edit at all, or another
    strength is better by STRENGTH_MARGIN and by more than the standard error of its per-pair gains: with
    a handful of validation pairs (10 pairs leave 2) a lucky pair must not rescale every photo.

    other_photos: more evidence than the validation pairs, (policy, pairs it was not fitted to), such as
    the instant model's cross-validation folds; the strength is chosen on all of it, but never one that
    validates worse than no edit (then validation alone chooses, as without it).
    """
    per_pair = {s: val.per_pair(actor, s) for s in STRENGTHS}
    scores = {s: float(v.mean()) for s, v in per_pair.items()}
    evidence = {
        s: torch.cat([v] + [pairs.per_pair(policy, s) for policy, pairs in other_photos])
        for s, v in per_pair.items()
    }
    best = min(evidence, key=lambda s: float(evidence[s].mean()))
    if len(evidence[1.0]) < STRENGTH_MIN_PAIRS or not _clearly_better(evidence[best], evidence[1.0]):
        best = 1.0
    if scores[best] > scores[0.0]:
        best = min(scores, key=scores.get)
    return best, scores


def _evidence(new: torch.Tensor, old: torch.Tensor) -> float:
    """How far per-pair validation dE00 `new` beats `old`: the mean gain over the larger of STRENGTH_MARGIN
    and the standard error of the per-pair gains (one lucky pair among a few is not evidence)."""
    gains = old - new
    noise = float(gains.std() / len(gains) ** 0.5) if len(gains) > 1 else float("inf")
    return float(gains.mean()) / max(STRENGTH_MARGIN, noise)


def _clearly_better(new: torch.Tensor, old: torch.Tensor) -> bool:
    """Whether `new` beats `old` by STRENGTH_MARGIN on average and by more than the per-pair gains'
    standard error (``_evidence`` of at least 1)."""
    return _evidence(new, old) >= 1.0


def _evidence_share(new: torch.Tensor, old: torch.Tensor) -> float:
    """How much of `new` to serve beside `old`: 0 up to half the evidence ``_clearly_better`` asks, 1 from one
    and a half times it, linear between (a half at exactly that). A hard switch at the threshold flips
    between two different policies on a last-bit difference in the scores (a CPU's other rounding); a ramp
    moves the served policy a little instead."""
    return min(1.0, max(0.0, _evidence(new, old) - 0.5))


# Ridge penalties tried by ``distill`` (standardised features, ~1,000 states): small ones let the policy
# follow the photo closely, large ones tend to one slider vector for every photo (a preset).
RIDGE_LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
# Penalties of the fits shrunk towards a LinearStylePrior (its precision has a mean diagonal of 1, so they
# read like RIDGE_LAMBDAS; the largest leave little but the average style's answer and the editor's offset)
PRIOR_PENALTIES = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


@dataclass
class _Fold:
    """One fold of the cross-validation ``distill`` can add to the validation pairs."""

    held_out: torch.Tensor  # bool (P,): states left out of this fold's fit (some befores and their copies)
    test: _Val  # those befores (originals only) and their afters


def similar_photo_folds(pool: _Pool, k: int, seed: int) -> list[_Fold]:
    """k folds of the pool's training pairs, each a cluster of befores with similar colour statistics.

    Clusters, not random pairs: an editor's pairs come in series (a shoot, crops of one photo), and a fold
    that keeps a photo's neighbours in the fit says how well a policy does on that photo, not on the next
    shoot. k-means (OpenCV) on the originals' standardised features, started from a seeded assignment.
    """
    n = len(pool.idx_original)
    k = min(k, n // 2)  # fewer folds for a few pairs (4 or 5: two), each of two photos at least
    if k < 2:
        return []
    x = pool.feats[pool.idx_original]
    x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).numpy().astype(np.float32)
    start = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) % k).numpy().astype(np.int32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    _, labels, _ = cv2.kmeans(x, k, start.reshape(-1, 1), criteria, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    group = torch.from_numpy(labels.ravel().astype(np.int64))
    folds = []
    for g in range(k):
        members = torch.nonzero(group == g).squeeze(1)
        if len(members) == 0:
            continue
        originals = pool.idx_original[members]
        w = None if pool.weights is None else pool.weights[pool.pair[originals]]
        view = None if pool.view is None else pool.view[originals]
        test = _Val(pool.before[originals], pool.target[pool.pair[originals]], w, view)
        folds.append(_Fold(group[pool.source] == g, test))
    return folds


def fold_fits(keep: torch.Tensor, folds: list[_Fold]) -> list[tuple[torch.Tensor, _Fold]]:
    """(states to fit without the fold, fold) for each fold that leaves at least two states `keep` to fit."""
    fits = [(keep & ~fold.held_out, fold) for fold in folds]
    return [(fit, fold) for fit, fold in fits if int(fit.sum()) >= 2]


class LabelMetric:
    """Each state's ``slider_metric`` (P, 12, 12), and the Gram matrices of the metric-weighted linear fits
    made with it: every form and penalty fitted to the same states on the same statistics shares one."""

    def __init__(self, per_state: torch.Tensor):
        self.per_state = per_state.double()
        self._grams: dict[tuple[bytes, bytes], torch.Tensor] = {}

    def gram(
        self, fit: torch.Tensor, cols: torch.Tensor, x_fit: torch.Tensor, standardised_by: str
    ) -> torch.Tensor:
        """sum_i M_i ⊗ x_i x_iᵀ over the states `fit` (x_fit: their statistics `cols`, standardised by
        "pool" or "prior": two different x_fit for the same states), (12 F, 12 F)."""
        key = (fit.numpy().tobytes(), cols.numpy().tobytes(), standardised_by)
        if key not in self._grams:
            m = self.per_state[fit]
            n, k, f = len(x_fit), m.shape[1], x_fit.shape[1]
            outer = (x_fit[:, :, None] * x_fit[:, None, :]).reshape(n, f * f)
            gram = (m.reshape(n, k * k).T @ outer).view(k, k, f, f)  # [a, b, c, d]: sum_i M_i[a, b] x_ic x_id
            self._grams[key] = gram.permute(0, 2, 1, 3).reshape(k * f, k * f)  # rows (a, c), columns (b, d)
        return self._grams[key]


@dataclass(frozen=True)
class DistillForm:
    """How ``distill`` combines the actor with a linear policy: actor_share * actor + linear_share * linear.

    The linear policy is a ridge fit (`penalty`) on every statistic or on ``KEY_FEATURES`` alone
    (`key_only`), to the best actions (`corrects_actor` False) or to what the actor misses of them (True).
    """

    actor_share: float
    linear_share: float
    penalty: float
    key_only: bool = False
    corrects_actor: bool = False
    weighted: bool = False  # label errors weighed by the states' slider_metric (distill's `metric`)
    prior: bool = False  # shrunk towards a LinearStylePrior's mean in its covariance, not towards a preset


@dataclass(frozen=True)
class BlendedForms:
    """Two forms served together, share * first + (1 - share) * second (``distill``'s choice where the
    evidence for the key statistics is neither clear nor absent); second None: the actor alone."""

    first: DistillForm
    second: DistillForm | None
    share: float

    @property
    def penalty(self) -> float | None:  # the larger part's, as a run's metrics report it (None: the actor's)
        if self.share >= 0.5:
            return self.first.penalty
        return None if self.second is None else self.second.penalty


def fit_distilled(
    actor: Actor, actor_actions: torch.Tensor, feats: torch.Tensor, best_a: torch.Tensor, fit: torch.Tensor,
    form: DistillForm | BlendedForms | None, metric: LabelMetric | None = None,
    linear_prior: LinearStylePrior | None = None,
) -> DistilledActor:  # fmt: skip
    """The policy of `form`: the actor and ``fit_linear``'s policy, each at its share (None: the actor)."""
    if form is None:
        return DistilledActor(actor, LinearPolicy(), mix=0.0, actor_share=1.0).eval()
    if isinstance(form, BlendedForms):
        return blended(
            *(fit_distilled(actor, actor_actions, feats, best_a, fit, f, metric, linear_prior)
              for f in (form.first, form.second)),
            form.share,
        )  # fmt: skip
    linear = fit_linear(actor_actions, feats, best_a, fit, form, metric, linear_prior)
    return DistilledActor(actor, linear, form.linear_share, form.actor_share).eval()


def fit_linear(
    actor_actions: torch.Tensor, feats: torch.Tensor, best_a: torch.Tensor, fit: torch.Tensor, form: DistillForm,
    metric: LabelMetric | None = None, linear_prior: LinearStylePrior | None = None,
) -> LinearPolicy:  # fmt: skip
    """The linear part of `form`'s policy, fitted in closed form to the best actions of states `fit` (its
    shares do not change it).

    actor_actions (P, 12): the actor's actions for the states (computed once by the caller: it is the
    expensive part when many forms are fitted); feats (P, F) are standardised over all P states (by the
    prior's standardisation for a `form.prior`). metric: each state's label error weighed by its
    ``slider_metric`` (None: all alike). linear_prior: what a `form.prior` fit is shrunk towards.
    """
    x = feats.double()
    mean, std = x.mean(0), x.std(0) + 1e-6
    if form.prior:  # the prior's W reads statistics standardised as its styles' were
        mean, std = linear_prior.feat_mean.double(), linear_prior.feat_std.double()
    xs = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    cols = torch.tensor([*KEY_FEATURES, xs.shape[1] - 1]) if form.key_only else torch.arange(xs.shape[1])
    penalty = torch.ones(len(cols), dtype=torch.float64)
    penalty[-1] = 0  # not on the bias (the last column)
    target = best_a[fit].double()
    if form.corrects_actor:
        target = target - actor_actions[fit].double()
    x_fit = xs[fit][:, cols]
    w = torch.zeros(xs.shape[1], target.shape[1], dtype=torch.float64)  # (F + 1, 12)
    if not form.weighted and not form.prior:  # plain ridge: one small system shared by the 12 sliders
        w[cols] = torch.linalg.solve(x_fit.T @ x_fit + form.penalty * torch.diag(penalty), x_fit.T @ target)
    else:  # one system for all 12 sliders at once, vec(W) ordered (slider, statistic)
        k, f = target.shape[1], len(cols)
        if form.weighted:  # sum_i (W x_i - t_i)ᵀ M_i (W x_i - t_i)
            gram = metric.gram(fit, cols, x_fit, standardised_by="prior" if form.prior else "pool")
            rhs = torch.einsum("nab,nb,nc->ac", metric.per_state[fit], target, x_fit).reshape(-1)
        else:
            gram = torch.kron(torch.eye(k, dtype=torch.float64), x_fit.T @ x_fit)
            rhs = (x_fit.T @ target).T.reshape(-1)
        if form.prior:  # + penalty (w - mean)ᵀ precision (w - mean): towards how styles in general answer
            precision = form.penalty * linear_prior.precision.double()
            gram = gram + precision
            rhs = rhs + precision @ linear_prior.mean.double().T.reshape(-1)
        else:  # + penalty |W|², the bias free
            gram = gram + form.penalty * torch.diag(penalty.repeat(k))
        w[cols] = torch.linalg.solve(gram, rhs).view(k, f).T
    linear = LinearPolicy(feats.shape[1], best_a.shape[1])
    with torch.no_grad():
        linear.feat_mean.copy_(mean.float())
        linear.feat_std.copy_(std.float())
        linear.linear.weight.copy_(w[:-1].T.float())
        linear.linear.bias.copy_(w[-1].float())
    return linear.eval()


def distill_forms(mix: float, key_statistics: bool, weighted: bool, prior: bool) -> list[DistillForm]:
    """The forms ``distill`` fits and chooses among (its docstring says which and why)."""
    shares = [(1 - share, share, False) for share in sorted({mix, 1.0})] + [(1.0, 1.0, True)]
    weightings = (False, True) if weighted else (False,)
    forms = [
        DistillForm(actor_share, linear_share, lam, key_only, corrects, weighting)
        for key_only in ((False, True) if key_statistics else (False,))
        for weighting in weightings
        for actor_share, linear_share, corrects in shares
        for lam in RIDGE_LAMBDAS
    ]
    if prior:  # the prior's mean is of actions: not for the correction of the actor
        forms += [
            DistillForm(actor_share, linear_share, lam, False, False, weighting, prior=True)
            for weighting in weightings
            for actor_share, linear_share, corrects in shares
            if not corrects
            for lam in PRIOR_PENALTIES
        ]
    return forms


def distill(
    actor: Actor,
    feats: torch.Tensor,
    conv: torch.Tensor,
    best_a: torch.Tensor,
    best_r: torch.Tensor,
    val: _Val,
    mix: float,
    folds: list[_Fold] = (),
    key_statistics: bool = False,
    metric: LabelMetric | None = None,
    linear_prior: LinearStylePrior | None = None,
    on_fit: Callable[[], None] | None = None,
) -> tuple[DistilledActor | None, DistillForm | BlendedForms | None]:
    """The RL actor combined with a linear policy fitted to the search's best confirmed actions.

    feats (P, F), conv (P, 3, 16, 16), best_a (P, 12), best_r (P,): every training state's inputs and the
    best action the editor confirmed for it (reward > 0: better than no edit). Ridge regression in closed
    form, one fit per penalty in RIDGE_LAMBDAS, in three forms: the blend (1 - mix) actor + mix linear,
    the linear policy alone (where the actor is poor), and the actor plus a linear correction fitted to
    what it misses (where the actor follows the photo well but is off by an editor-wide offset; large
    penalties leave just that offset). Each is scored on the validation pairs, and on each fold's befores
    when fitted without them (``similar_photo_folds``: more photos to choose on than a fifth of the
    pairs). With folds, the form returned (with the policy) is the one with the largest penalty among
    those the best-scoring form is not clearly better than (``_clearly_better``): the one-standard-error
    rule of cross-validation, since from a few photos the lowest score is partly luck and a smaller
    penalty follows those photos more closely; without (after RL, whose actor has seen every fold), the
    best-scoring one. (None, None) when the actor alone scores best or fewer than two states have a
    confirmed action.

    key_statistics: each form is also fitted on ``KEY_FEATURES`` alone (the statistics photo-dependent
    edits answer to; the other weights 0), and served where it is clearly better (``_clearly_better`` on
    the same per-pair scores) than the best on every feature: with a few photos, all 61 statistics let the
    fit follow whatever else those photos have in common. Near that threshold the two are served blended
    (``_evidence_share``, ``BlendedForms``).

    metric: each form is also fitted with every state's label error weighed by its ``slider_metric``
    (``DistillForm.weighted``), and those compete with the plain fits under the same rules.

    linear_prior: the blend and the linear policy alone are also fitted shrunk towards how generated styles
    in general answer a photo (``DistillForm.prior``, penalties PRIOR_PENALTIES) instead of towards one
    slider vector for every photo; they compete under the same rules (the larger penalties, nearer the
    prior, win where they are not clearly worse, which matters with a few pairs).

    on_fit() is called after each form is fitted and scored, in each round (on every confirmed state, then
    without each fold): len(distill_forms(...)) calls a round.
    """
    keep = best_r > 0
    if int(keep.sum()) < 2:
        return None, None
    with torch.no_grad():
        actor_a = actor.eval()(feats, conv)
    forms = distill_forms(mix, key_statistics, metric is not None, linear_prior is not None)

    linear_fits = {}  # the blend and the linear policy alone weigh the same linear fit: solved once

    def fitted(form: DistillForm, states: torch.Tensor) -> DistilledActor:
        key = (replace(form, actor_share=0.0, linear_share=0.0), states.numpy().tobytes())
        if key not in linear_fits:
            linear_fits[key] = fit_linear(actor_a, feats, best_a, states, form, metric, linear_prior)
        return DistilledActor(actor, linear_fits[key], form.linear_share, form.actor_share).eval()

    full, per_pair = {}, {None: [val.per_pair(actor)]}  # the actor alone, kept on a tie
    for form in forms:
        full[form] = fitted(form, keep)
        per_pair[form] = [val.per_pair(full[form])]
        if on_fit is not None:
            on_fit()
    for fit, fold in fold_fits(keep, folds):
        for form in forms:
            per_pair[form].append(fold.test.per_pair(fitted(form, fit)))
            if on_fit is not None:
                on_fit()
        per_pair[None].append(fold.test.per_pair(actor))
    scores = {form: torch.cat(v) for form, v in per_pair.items()}
    total = {form: float(v.sum()) for form, v in scores.items()}
    best = min((f for f in scores if f is None or not f.key_only), key=total.get)
    if best is not None and folds:  # the one-standard-error rule, where cross-validation gives the evidence
        near = [f for f in full if not f.key_only and not _clearly_better(scores[best], scores[f])]
        best = max(near, key=lambda f: (f.penalty, -total[f]))
    if key_statistics:  # the fewer statistics must earn their place: clearly better, not by a lucky pair
        best_key = min((f for f in scores if f is not None and f.key_only), key=total.get)
        share = _evidence_share(scores[best_key], scores[best])
        if share == 1.0:
            best = best_key
        elif share > 0.0:
            second = (
                full[best] if best is not None else fit_distilled(actor, actor_a, feats, best_a, keep, None)
            )
            return blended(full[best_key], second, share), BlendedForms(best_key, best, share)
    return (None, None) if best is None else (full[best], best)


def _augment_pool(
    ps: PairSet,
    idx: np.ndarray,
    copies: int,
    strength: float,
    seed: int,
    env_size: int,
    aug_target: str = "unchanged",
    style: emulator.StyleEmulator | None = None,
) -> _Pool:
    """The training states: the befores of pairs idx plus `copies` camera-jittered copies of each.

    aug_target "unchanged": a copy's target is its pair's after (the seed's augmentation: right for what
    the style undoes); "emulated": the after moved by what a style emulator fitted to these pairs
    (rlcore.emulator) says the style would do differently for the jittered photo (right for what the
    style keeps, too). style: that emulator, where the caller has fitted it already (None: fitted here).
    """
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    before = torch.from_numpy(ps.before[idx])
    target = torch.from_numpy(ps.after[idx])
    weights = None if ps.weights is None else torch.from_numpy(ps.weights[idx])
    n = len(idx)
    if ps.view is None:
        jittered = [camera_jitter(before, gen, strength) for _ in range(copies)]
        views = None
    else:  # the whole photo and its region jittered alike (camera_jitter is per pixel, per photo)
        view = torch.from_numpy(ps.view[idx])
        both = [camera_jitter(torch.cat([before, view], 2), gen, strength) for _ in range(copies)]
        jittered = [b[:, :, : before.shape[2]] for b in both]
        views = torch.cat([view, *(b[:, :, before.shape[2] :] for b in both)])
    states = torch.cat([before, *jittered])
    original = torch.arange(len(states)) < n
    if aug_target == "unchanged" or copies == 0:
        return _Pool(states, torch.arange(len(states)) % n, original, target, weights, env_size, views)
    if aug_target != "emulated":
        raise ValueError(f"aug_target must be 'unchanged' or 'emulated', got {aug_target!r}")
    if style is None:
        style = emulator.fit(before, target, seed=seed)
    targets = torch.cat([target, emulator.moved_targets(style, before, torch.cat(jittered), target)])
    per_state_weights = None if weights is None else weights.repeat(copies + 1, 1, 1)
    return _Pool(states, torch.arange(len(states)), original, targets, per_state_weights, env_size, views)


# ------------------------------------------------------------------------------------------------------
# Progress, cancellation, results
# ------------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    step: int
    fraction: float  # 0..1 of the budget
    eta_seconds: float
    epsilon: float
    reward: float  # mean reward of the last batch of environment steps
    val_delta_e: float  # latest validation mean dE00 (nan before the first validation)


class Cancelled(Exception):
    """Raised when should_stop() returned True; the checkpoint (if any) holds the state at that point."""


def _budget_fraction(elapsed: float, seconds: float, cfg: Config) -> float:
    """The share of a time budget spent (the reserve for the final evaluation left out)."""
    return min(1.0, elapsed / max(1e-6, seconds - cfg.reserve_s))


def _eta(elapsed: float, fraction: float) -> float:
    """Seconds left at the pace so far (nan before any progress)."""
    return elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")


def _instant_copies(cfg: Config, n_train: int) -> int:
    """Jittered copies of each training before that the instant model searches (fewer with many pairs: its
    searches' cost); none where it is not distilled from searched actions."""
    return (
        min(cfg.instant_copies, cfg.instant_states_max // n_train)
        if cfg.distill and cfg.search_iters > 0
        else 0
    )


def instant_step_seconds(cfg: Config, n_pairs: int, linear_prior: bool, inverse: bool) -> dict[str, float]:
    """Seconds each step of the instant model takes, in order, estimated from the work it is given by n_pairs
    pairs (split as ``train_val_split`` splits them) and cfg (linear_prior: whether its fits include the
    prior's; inverse: whether the base has the editor's inverse): what its progress fraction and ETA are
    computed from. The constants are one idle core's (`bench/bench_instant.py` prints the estimate beside
    the clock); only their ratios matter once a step has shown the pace.
    """
    n_val = len(train_val_split(n_pairs, cfg.val_fraction, 0)[1])  # the same count for every seed
    n_train = n_pairs - n_val
    n_scored = min(n_pairs, cfg.instant_scored_max)  # each form's edits: validation and folds, sampled
    n_copies = n_train * _instant_copies(cfg, n_train)
    searched = cfg.distill and cfg.search_iters > 0
    forms = distill_forms(cfg.distill_mix, cfg.distill_key_statistics, cfg.distill_metric, linear_prior)
    n_forms = len(forms) if searched else 0
    n_folds = min(cfg.distill_folds, n_train // 2) if n_train // 2 >= 2 else 0  # as similar_photo_folds
    return {
        "search": 0.02 / 48 * _search_generations(cfg, inverse) * n_train,  # 12 edits each at 16x16
        # the copies, and the style emulator fitted to the pairs to move their targets (none without copies)
        "copies": 0.0064 * n_copies + (0.0045 if n_copies else 0.0008) * n_train,
        "copies_search": 0.0043 * n_copies,  # 12 generations of 12 edits from the original's action
        "metric": 0.001 * (n_train + n_copies) if searched else 0.0,  # slider metric, the folds' clusters
        # a linear solve per form and round, and each form's edits of the pairs it is scored on (the validation
        # pairs in the first round, each fold's befores in the others), as many pixels as instant_score_size's
        "fits": (0.0033 * (1 + n_folds) + 0.0003 * n_scored * (cfg.instant_score_size / 64) ** 2) * n_forms,
    }


def instant_seconds(
    n_pairs: int, cfg: Config | None = None, linear_prior: bool = True, inverse: bool = True
) -> float:
    """The instant model's estimated seconds for n_pairs pairs on one idle core (``instant_step_seconds``),
    for saying before a job how long its first answer will take."""
    return sum(instant_step_seconds(cfg or Config(), n_pairs, linear_prior, inverse).values())


def _search_generations(cfg: Config, inverse: bool) -> int:
    """Generations of the training pairs' searches (``_search_pairs``): shorter from the inverse's answer."""
    if cfg.search_iters <= 0:
        return 0
    return cfg.inverse_search_iters if inverse and cfg.search_from_inverse else cfg.search_iters


class _SetupProgress:
    """Progress and cancellation through the steps before RL: the searches and fits of the instant model
    take tens of seconds with many pairs. Each step reports its start (``begin``), its units of work done
    (``tick``) and its end (``end``); every report checks ``should_stop`` (the worker's heartbeat rides on
    it: a job silent for longer than its lease is given to another worker) and passes progress on: at each
    step's start and end, and at most 10 times a second in between.

    step_seconds: each step's estimated seconds (``instant_step_seconds``). The work done is their sum
    over the steps done plus the current step's share of its units; the pace (elapsed / work done) turns
    the work left into an ETA (the estimate's own seconds before any work is done). For seconds=0 the
    fraction is the share of the work done; for a job with a budget it is the budget's clock, as RL's is,
    unless the instant model alone is expected to outlast the budget: then its end is the horizon.
    """

    def __init__(self, seconds, max_steps, cfg, t_start, should_stop, on_progress, step_seconds):
        self.seconds, self.max_steps, self.cfg, self.t_start = seconds, max_steps, cfg, t_start
        self.should_stop, self.on_progress = should_stop, on_progress
        self.step_seconds = step_seconds
        self.total = max(1e-6, sum(step_seconds.values()))
        self.finished = 0.0  # estimated seconds of the steps done
        self.step, self.units, self.done_units = None, 1, 0
        self.last_report = -1.0

    def begin(self, step: str, units: int = 1) -> Callable[[], None]:
        """Ends the current step and starts `step`, of `units` ticks; returns its tick."""
        self.end()
        self.step, self.units, self.done_units = step, max(1, units), 0
        self._report(force=True)
        return self.tick

    def tick(self) -> None:
        self.done_units += 1
        self._report()

    def end(self) -> None:
        """Ends the current step (if any)."""
        if self.step is not None:
            self.finished += self.step_seconds[self.step]
            self.step = None
            self._report(force=True)

    def report(self) -> None:
        """Reports progress now (at the start, before the first step)."""
        self._report(force=True)

    def fraction_and_eta(self, elapsed: float) -> tuple[float, float]:
        if self.max_steps is not None:
            return 0.0, float("nan")  # RL's fraction counts steps, none taken yet
        current = (
            0.0
            if self.step is None
            else self.step_seconds[self.step] * min(1.0, self.done_units / self.units)
        )
        done = min(self.total, self.finished + current)
        pace = elapsed / done if done > 0 else 1.0
        work_left = (self.total - done) * pace
        if self.seconds <= 0:
            return done / self.total, work_left
        if elapsed + work_left <= self.seconds - self.cfg.reserve_s:  # the budget's clock, as RL's
            return _budget_fraction(elapsed, self.seconds, self.cfg), max(0.0, self.seconds - elapsed)
        return elapsed / (elapsed + work_left), work_left  # the instant model alone outlasts the budget

    def poll(self) -> None:
        """Checks ``should_stop`` (and so beats the worker's heartbeat) without reporting progress: every
        report does, and after RL, which reports its own end, RL's distillation does."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("fine-tuning cancelled")

    def _report(self, force: bool = False) -> None:
        self.poll()
        now = time.monotonic()
        if self.on_progress is None or (now - self.last_report < 0.1 and not force):
            return
        self.last_report = now
        f, eta = self.fraction_and_eta(now - self.t_start)
        self.on_progress(Progress(0, f, eta, self.cfg.eps_start, float("nan"), float("nan")))


@dataclass
class FinetuneResult:
    model: PersonalModel
    metrics: dict[str, Any]
    curve: list[tuple[int, float]]
    val_idx: list[int] = field(default_factory=list)  # the pairs validation used (for comparing models)


# ------------------------------------------------------------------------------------------------------
# Training checkpoints: the resumable state of a run in progress (not a model file: rlcore.modelfile)
# ------------------------------------------------------------------------------------------------------


def _fingerprint(*arrays, extra: str = "") -> str:
    """What a checkpoint belongs to (the data, seed and settings): a checkpoint of another run is ignored."""
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    """Written atomically: a worker killed mid-write leaves the previous checkpoint, never half of one."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def _load_checkpoint(path: Path) -> dict | None:
    """The state _save_checkpoint wrote (tensors and plain values only: nothing is unpickled), or None."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


# ------------------------------------------------------------------------------------------------------
# The training loop (shared by train_base and finetune)
# ------------------------------------------------------------------------------------------------------


def _train(
    pool: _Pool,
    val: _Val,
    actor: Actor,
    critic: Critic,
    cfg: Config,
    seed: int,
    seconds: float,
    max_steps: int | None,
    checkpoint_path: Path | None,
    should_stop: Callable[[], bool] | None,
    on_progress: Callable[[Progress], None] | None,
    fingerprint: str,
    t_start: float,
    searched: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    start_params = [p.detach().clone() for p in actor.parameters()]
    opt_a = torch.optim.Adam(actor.parameters(), lr=cfg.lr_actor, weight_decay=cfg.weight_decay)
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.lr_critic)
    cap = cfg.buffer_size
    buf_idx = torch.zeros(cap, dtype=torch.long)
    buf_a = torch.zeros(cap, 12)
    buf_r = torch.zeros(cap)
    # the best action the environment has confirmed for each state so far (no edit = reward 0 to start)
    best_a = torch.zeros(len(pool), 12)
    best_r = torch.zeros(len(pool))
    if searched is not None:  # the originals' searched actions, scored again at the reward's size
        originals = pool.idx_original  # the pool's first states, in the training pairs' order
        r0 = pool.step(originals, searched[0])
        found = r0 > 0
        best_a[originals[found]], best_r[originals[found]] = searched[0][found], r0[found]
    ptr = size = step = 0
    elapsed_before = 0.0  # seconds spent in earlier (killed) runs
    best_val = val.delta_e(actor)
    best_actor = copy.deepcopy(actor.state_dict())
    best_step, since_best = 0, 0
    curve: list[tuple[int, float]] = [(0, best_val)]
    last_val, last_reward = best_val, float("nan")

    if checkpoint_path is not None and Path(checkpoint_path).exists():
        st = _load_checkpoint(Path(checkpoint_path))
        if st is not None and st.get("fingerprint") == fingerprint:
            actor.load_state_dict(st["actor"])
            critic.load_state_dict(st["critic"])
            opt_a.load_state_dict(st["opt_actor"])
            opt_c.load_state_dict(st["opt_critic"])
            start_params = list(st["start_params"])
            n = int(st["size"])
            buf_idx[:n], buf_a[:n], buf_r[:n] = st["buf_idx"], st["buf_a"], st["buf_r"]
            best_a, best_r = st["best_a"], st["best_r"]
            ptr, size, step = int(st["ptr"]), n, int(st["step"])
            elapsed_before = float(st["elapsed"])
            best_val, best_step, since_best = (
                float(st["best_val"]),
                int(st["best_step"]),
                int(st["since_best"]),
            )
            best_actor = st["best_actor"]
            curve = [(int(s), float(v)) for s, v in st["curve"]]
            last_val, last_reward = float(st["last_val"]), float(st["last_reward"])
            gen.set_state(st["gen"])
            torch.set_rng_state(st["torch_rng"])
    run_start = time.monotonic()
    setup_s = run_start - t_start  # this run's setup counts against the budget too
    elapsed_before += setup_s

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - run_start

    def fraction() -> float:
        if max_steps is not None:
            return min(1.0, step / max(1, max_steps))
        return _budget_fraction(elapsed(), seconds, cfg)

    def state_dict() -> dict:
        return {
            "fingerprint": fingerprint,
            "actor": actor.state_dict(),
            "critic": critic.state_dict(),
            "opt_actor": opt_a.state_dict(),
            "opt_critic": opt_c.state_dict(),
            "start_params": start_params,
            "buf_idx": buf_idx[:size].clone(),
            "buf_a": buf_a[:size].clone(),
            "buf_r": buf_r[:size].clone(),
            "best_a": best_a.clone(),
            "best_r": best_r.clone(),
            "ptr": ptr,
            "size": size,
            "step": step,
            "elapsed": elapsed(),
            "best_val": best_val,
            "best_step": best_step,
            "since_best": since_best,
            "best_actor": best_actor,
            "curve": [[s, v] for s, v in curve],
            "last_val": last_val,
            "last_reward": last_reward,
            "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    last_ckpt = last_progress = time.monotonic()
    stopped_early = False
    while True:
        if should_stop is not None and should_stop():
            if checkpoint_path is not None:
                _save_checkpoint(Path(checkpoint_path), state_dict())
            raise Cancelled("fine-tuning cancelled")
        frac = fraction()
        if (max_steps is not None and step >= max_steps) or elapsed() >= seconds - cfg.reserve_s:
            break
        if frac >= cfg.min_fraction and since_best >= cfg.patience:
            stopped_early = True
            break

        # 1-2. states and actions: epsilon-greedy around the actor, plus noise of a random scale
        eps = cfg.eps_end + (cfg.eps_start - cfg.eps_end) * max(0.0, 1.0 - frac / cfg.eps_decay_fraction)
        if cfg.exploration == "uniform":
            eps = 1.0
        idx = pool.sample(cfg.batch_envs, gen, cfg.p_original)
        with torch.no_grad():
            a = actor(pool.feats[idx], pool.conv[idx])
        around_best = torch.rand(cfg.batch_envs, 1, generator=gen) < cfg.p_around_best
        a = torch.where(around_best & (best_r[idx] > 0).unsqueeze(1), best_a[idx], a)
        sigma = cfg.noise_min * (cfg.noise_max / cfg.noise_min) ** torch.rand(
            cfg.batch_envs, 1, generator=gen
        )
        a = a + sigma * torch.randn(cfg.batch_envs, 12, generator=gen)
        random_a = torch.rand(cfg.batch_envs, 12, generator=gen) * 2 - 1
        a = torch.where(torch.rand(cfg.batch_envs, 1, generator=gen) < eps, random_a, a)
        a = to_sliders(a) / 100.0  # the action the editor really ran

        # 3. environment (the editor, a black box) and the reward; into the replay buffer
        r = pool.step(idx, a)
        last_reward = float(r.mean())
        n = cfg.batch_envs
        pos = (torch.arange(n) + ptr) % cap
        buf_idx[pos], buf_a[pos], buf_r[pos] = idx, a, r
        top = torch.full((len(pool),), -1e9).scatter_reduce(0, idx, r, "amax")  # per state, this batch
        better = (r >= top[idx]) & (r > best_r[idx])
        best_a[idx[better]], best_r[idx[better]] = a[better], r[better]
        ptr, size = (ptr + n) % cap, min(cap, size + n)

        # 4. critic: regress Q(s, a) on observed rewards
        for _ in range(cfg.critic_updates):
            j = torch.randint(size, (cfg.batch_size,), generator=gen)
            s = buf_idx[j]
            q = critic(pool.feats[s], buf_a[j])
            loss_c = F.huber_loss(q, buf_r[j], delta=cfg.huber_delta)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()

        # 5. actor: maximise Q(s, actor(s)); self-imitation of the best confirmed action of each state;
        #    stay close to the starting weights
        for _ in range(cfg.actor_updates):
            s = pool.sample(cfg.batch_size, gen, cfg.p_original)
            pi = actor(pool.feats[s], pool.conv[s], cfg.actor_dropout, cfg.feat_noise)
            q = critic(pool.feats[s], pi)
            imitate = ((pi - best_a[s]) ** 2).sum(1) * (best_r[s] > 0)
            reg = sum(((p - p0) ** 2).sum() for p, p0 in zip(actor.parameters(), start_params, strict=True))
            loss_a = -q.mean() + cfg.self_imitation * imitate.mean() + cfg.l2_to_start * reg
            opt_a.zero_grad(set_to_none=True)
            loss_a.backward()
            opt_a.step()
        step += 1

        # 6. validation, early stopping, checkpoint, progress
        if step % cfg.val_every == 0:
            last_val = val.delta_e(actor)
            curve.append((step, last_val))
            if last_val < best_val - 1e-4:
                best_val, best_step, since_best = last_val, step, 0
                best_actor = copy.deepcopy(actor.state_dict())
            else:
                since_best += 1
        now = time.monotonic()
        if checkpoint_path is not None and now - last_ckpt >= cfg.checkpoint_every_s:
            _save_checkpoint(Path(checkpoint_path), state_dict())
            last_ckpt = time.monotonic()
        if on_progress is not None and now - last_progress >= 0.1:
            last_progress = now
            f = fraction()
            eta = max(0.0, seconds - elapsed()) if max_steps is None else _eta(elapsed(), f)
            on_progress(Progress(step, f, eta, eps, last_reward, last_val))

    actor.load_state_dict(best_actor)
    if on_progress is not None:
        on_progress(Progress(step, 1.0, 0.0, cfg.eps_end, last_reward, best_val))
    return {
        "steps": step,
        "env_steps": step * cfg.batch_envs,
        "best_step": best_step,
        "best_val": best_val,
        "curve": curve,
        "stopped_early": stopped_early,
        "train_seconds": elapsed(),
        # diagnostics: mean reward of the best confirmed actions and of the final actor, on the pool
        "pool_best_reward": float(best_r.mean()),
        "pool_best_reward_original": float(best_r[pool.idx_original].mean())
        if len(pool.idx_original)
        else None,
        "best_actions": best_a,
        "best_rewards": best_r,
    }


# ------------------------------------------------------------------------------------------------------
# Public entry points
# ------------------------------------------------------------------------------------------------------


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine-tuning's split of n pairs into training and validation indices (sorted), fixed by the seed."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if n >= 2 else 0
    n_val = min(n_val, n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def finetune(
    pairs: PairSet,
    base: PersonalModel | None = None,
    seconds: float = 60.0,
    seed: int = 0,
    face_weight: float = 0.0,
    checkpoint_path: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    max_steps: int | None = None,
    config: Config | None = None,
) -> FinetuneResult:
    """Learns one editor's style from before/after thumbnails, starting from the base actor and critic.

    ``face_weight`` > 0 with ``pairs.weights`` None gives uniform weights (the caller detects faces: see
    rlcore.data.load_pairs_dir); with weights given they always flow into the reward.  ``max_steps``
    bounds the run by iterations (deterministic for a seed); ``seconds`` is a wall-clock budget counted
    across resumptions.
    """

    t_start = time.monotonic()
    cfg = copy.deepcopy(config or Config())
    with torch_threads(cfg.threads):
        return _finetune(pairs, base, seconds, seed, face_weight, checkpoint_path, should_stop, on_progress,
                         max_steps, cfg, t_start)  # fmt: skip


def _finetune(pairs, base, seconds, seed, face_weight, checkpoint_path, should_stop, on_progress, max_steps, cfg,
              t_start) -> FinetuneResult:  # fmt: skip
    if base is None:
        base = load_model(BASE_MODEL_PATH)
    if len(pairs) < 2:
        raise ValueError("need at least 2 before/after pairs")
    if base.critic is None:
        raise ValueError("the base model has no critic; fine-tuning needs a base model file with one")
    weights = pairs.weights
    train_idx, val_idx = train_val_split(len(pairs), cfg.val_fraction, seed)
    n_train = len(train_idx)
    # fewer copies per pair when there are many pairs: the pool stays a size a 60 s run can explore
    copies = min(cfg.aug_copies, max(1, cfg.aug_states_max // n_train)) if cfg.aug_copies else 0
    instant_copies = _instant_copies(cfg, n_train)
    linear_prior = base.linear_prior if cfg.distill_prior else None
    inverse = base.inverse if cfg.search_from_inverse else None
    step_seconds = instant_step_seconds(cfg, len(pairs), linear_prior is not None, inverse is not None)
    setup = _SetupProgress(seconds, max_steps, cfg, t_start, should_stop, on_progress, step_seconds)
    setup.report()  # building the pool (emulator included) takes a few seconds: say so at once
    val = _Val(
        torch.from_numpy(pairs.before[val_idx]),
        torch.from_numpy(pairs.after[val_idx]),
        None if weights is None else torch.from_numpy(weights[val_idx]),
        None if pairs.view is None else torch.from_numpy(pairs.view[val_idx]),
    )
    val_no_edit = val.delta_e(None)
    val_base = val.delta_e(base.actor)
    instant = seconds <= 0 and max_steps is None  # the base's answer for these pairs (a prior: their code)
    if base.encoder is not None:  # a style prior: its code for these training pairs is the instant model
        z = base.encoder.encode(pairs.before[train_idx], pairs.after[train_idx])
        actor = StyleActor(copy.deepcopy(base.actor.policy), z)
        critic = FixedStyleCritic(copy.deepcopy(base.critic.critic), z)
    else:
        # a fine-tuned model as the base: go on from its RL actor (its linear policy is fitted anew)
        rl_actor = base.actor.actor if isinstance(base.actor, DistilledActor) else base.actor
        actor = copy.deepcopy(rl_actor)
        critic = copy.deepcopy(base.critic)
        if isinstance(actor, Actor) and not cfg.use_conv and not instant:  # conv output 0 from here on
            with torch.no_grad():
                actor.conv[2].weight.zero_()
                actor.conv[2].bias.zero_()
    fp = _fingerprint(
        pairs.before,
        pairs.after,
        weights,
        pairs.view,
        extra=f"{seed}|{face_weight}|{asdict(cfg)}|{base.metadata.get('model_id')}",
    )
    on_generation = setup.begin("search", _search_generations(cfg, inverse is not None))
    searched = _search_pairs(pairs, train_idx, cfg, seed, on_generation, inverse)
    # the training states, the befores and jittered copies: the instant model searches its rounds of copies,
    # RL trains on `copies` rounds and starts from the originals' searched actions (docs/agent.md)
    rl_copies = 0 if instant else copies
    instant_strength = cfg.aug_strength * (cfg.few_pairs_jitter if n_train < cfg.few_pairs else 1.0)

    def jittered_pool(n_copies: int, strength: float, style: emulator.StyleEmulator | None = None) -> _Pool:
        return _augment_pool(pairs, train_idx, n_copies, strength, seed, cfg.env_size, cfg.aug_target, style)

    setup.begin("copies")  # the jittered copies, their targets moved by the style emulator
    # One emulator for both pools: a copy's target does not depend on how far it was jittered
    style = None
    if cfg.aug_target == "emulated" and instant_copies + rl_copies > 0:  # no copies: no targets to move
        style = emulator.fit(
            pairs.before[train_idx],
            pairs.after[train_idx],
            seed=seed,
            size=cfg.emulator_size,
            steps=cfg.emulator_steps,
        )
    if instant_strength == cfg.aug_strength:  # one pool: the instant model's copies are RL's first
        pool = jittered_pool(max(instant_copies, rl_copies), cfg.aug_strength, style)
        instant_pool = pool.head(n_train * (1 + instant_copies))
    else:  # each its own (with seconds=0, RL's holds just the training befores)
        instant_pool = jittered_pool(instant_copies, instant_strength, style)
        pool = jittered_pool(rl_copies, cfg.aug_strength, style)
    # the instant model comes first: it is the answer for seconds=0, and RL must end better on validation
    instant_actor, instant_form, instant_folds = _instant_policy(
        copy.deepcopy(actor),
        instant_pool,
        searched,
        val,
        cfg,
        seed,
        linear_prior,
        setup,
    )
    setup.end()
    val_instant = val.delta_e(instant_actor)
    if instant:
        info = {"steps": 0, "env_steps": 0, "best_step": 0, "stopped_early": False, "curve": [(0, val_instant)],
                "pool_best_reward_original": None, "train_seconds": time.monotonic() - t_start}  # fmt: skip
        val_actor = val_instant
        actor, form, policy = instant_actor, instant_form, "instant"
    else:
        pool = pool.head(n_train * (1 + rl_copies))
        info = _train(
            pool, val, actor, critic, cfg, seed, seconds, max_steps,
            Path(checkpoint_path) if checkpoint_path is not None else None,
            should_stop, on_progress, fp, t_start, searched,
        )  # fmt: skip
        val_actor, form, policy = val.delta_e(actor), None, "fine_tuned"
        if cfg.distill:
            distilled, form = distill(
                actor, pool.feats, pool.conv, info["best_actions"], info["best_rewards"], val, cfg.distill_mix,
                on_fit=setup.poll,
            )  # fmt: skip
            actor = distilled if distilled is not None else actor
        if not _clearly_better(val.per_pair(actor), val.per_pair(instant_actor)):
            actor, form, policy = instant_actor, instant_form, "instant"
        elif cfg.distill and cfg.rl_share < 1:
            both = hedged(actor, instant_actor, cfg.rl_share)
            if val.delta_e(both) <= val_instant:  # never worse on validation than the instant model
                actor, policy = both, "hedged"
    # the instant model's strength can also be judged on the folds (RL's actor has seen every fold)
    other_photos = instant_folds if policy == "instant" and cfg.calibrate_on_folds else ()
    strength, scores = calibrate_strength(val, actor, other_photos)
    val_personal, val_unscaled = scores[strength], scores[1.0]
    metrics = {
        "val_delta_e_no_edit": round(val_no_edit, 4),
        "val_delta_e_base": round(val_base, 4),
        "val_delta_e_instant": round(val_instant, 4),
        "val_delta_e_personal": round(val_personal, 4),
        "val_delta_e_unscaled": round(val_unscaled, 4),
        "val_delta_e_actor": round(val_actor, 4),  # the RL actor alone, before distillation
        "distill_lambda": None if form is None else form.penalty,
        # what is served: "fine_tuned" (RL's policy, distilled), "hedged" (cfg.rl_share of it and the rest the
        # instant model's), or "instant" (where RL's did not validate clearly better)
        "policy": policy,
        "strength": strength,
        # what the calibration did: "kept" the actor as trained, "scaled" it, or fell back to "no_edit"
        "calibration": "kept" if strength == 1.0 else "no_edit" if strength == 0.0 else "scaled",
        "steps": info["steps"],
        "env_steps": info["env_steps"],
        "best_step": info["best_step"],
        "stopped_early": info["stopped_early"],
        "pool_best_reward_original": info["pool_best_reward_original"],
        "train_pairs": int(len(train_idx)),
        "aug_copies": copies,
        "val_pairs": int(len(val_idx)),
        "seconds": round(time.monotonic() - t_start, 2),
        "seconds_total": round(info["train_seconds"], 2),
        "seed": seed,
        "face_weight": face_weight,
    }
    model = PersonalModel(
        actor,
        critic,
        metadata={
            "kind": "personal",
            "base_version": base.metadata.get("model_id"),
            "metrics": metrics,
            "config": asdict(cfg),
            "strength": strength,
        },
    )
    return FinetuneResult(model=model, metrics=metrics, curve=info["curve"], val_idx=val_idx.tolist())


def _instant_policy(actor, pool: _Pool, searched, val: _Val, cfg: Config, seed: int,
                    linear_prior: LinearStylePrior | None, setup: _SetupProgress):  # fmt: skip
    """The instant model: `actor` (the base's, or the prior's policy with the pairs' code) distilled with
    the searched actions of the pool's states, the training befores and camera-jittered copies of them:
    (policy, its DistillForm or None for the actor alone, [(its fit without a fold, the fold's pairs)]).
    linear_prior: the base's, for the fits shrunk towards it (``distill``), or None; setup: where each of
    its steps reports progress (and may be cancelled).

    The actor was not fitted to these pairs (a prior's code was only read from them), so cross-validation
    on folds of similar training photos can say how each distillation form does on other photos; the
    policy's fits without each fold are that evidence for the calibration of its strength too.
    """
    if not cfg.distill or searched is None:
        return actor, None, []
    on_generation = setup.begin("copies_search", cfg.instant_copy_iters)
    best_a, best_r = _search_pool(pool, searched, cfg, seed, on_generation)
    folds = similar_photo_folds(pool, cfg.distill_folds, seed)
    # every form is scored on the validation pairs and each fold's befores: with many pairs, on a share of each
    share = min(1.0, cfg.instant_scored_max / (len(val) + len(pool.idx_original)))
    val = val.sample(share, seed)
    folds = [replace(fold, test=fold.test.sample(share, seed + 1 + i)) for i, fold in enumerate(folds)]
    metric = None
    setup.begin("metric")
    if cfg.distill_metric:
        weights = None if pool.weights is None else _resize_w(pool.weights[pool.pair], cfg.search_size)
        before = resize_u8(pool.before, cfg.search_size)
        metric = LabelMetric(slider_metric(before, best_a, weights))
    n_forms = len(distill_forms(cfg.distill_mix, cfg.distill_key_statistics, metric is not None,
                                linear_prior is not None))  # fmt: skip
    on_fit = setup.begin("fits", n_forms * (1 + len(folds)))
    size = cfg.instant_score_size
    distilled, form = distill(actor, pool.feats, pool.conv, best_a, best_r, val.resized(size), cfg.distill_mix,
                              [replace(fold, test=fold.test.resized(size)) for fold in folds],
                              cfg.distill_key_statistics, metric, linear_prior, on_fit)  # fmt: skip
    if distilled is None:
        return actor, None, [(actor, fold.test) for fold in folds]
    with torch.no_grad():
        actor_a = actor.eval()(pool.feats, pool.conv)
    other_photos = [
        (fit_distilled(actor, actor_a, pool.feats, best_a, fit, form, metric, linear_prior), fold.test)
        for fit, fold in fold_fits(best_r > 0, folds)
    ]
    return distilled, form, other_photos


def _search_pairs(ps: PairSet, idx: np.ndarray, cfg: Config, seed: int,
                  on_generation: Callable[[], None] | None = None, inverse: InverseEditor | None = None):  # fmt: skip
    """search_actions on training pairs idx (at cfg.search_size): from the editor's inverse's answer where
    there is one, else through the editor's consensus (``consensus_search``) with cfg.search_consensus:
    (N, 12), (N,), or None. on_generation() after each of its ``_search_generations`` generations."""
    if cfg.search_iters <= 0:
        return None
    gen = torch.Generator().manual_seed(seed * 7919 + 29)
    size = cfg.search_size
    before = resize_u8(torch.from_numpy(ps.before[idx]), size)
    after = resize_u8(torch.from_numpy(ps.after[idx]), size)
    target = reward.srgb_to_lab(after)
    weights = None if ps.weights is None else _resize_w(torch.from_numpy(ps.weights[idx]), size)
    if inverse is not None:
        start = inverse.actions(before, after)
        return search_actions(before, target, start, cfg.inverse_search_iters, cfg.search_popsize, gen, weights,
                              sigma0=cfg.consensus_sigma, on_generation=on_generation)  # fmt: skip
    if not cfg.search_consensus:
        no_edit = torch.zeros(len(idx), 12)
        return search_actions(before, target, no_edit, cfg.search_iters, cfg.search_popsize, gen, weights,
                              on_generation=on_generation)  # fmt: skip
    return consensus_search(before, target, cfg.search_iters, cfg.search_popsize, gen, weights,
                            sigma=cfg.consensus_sigma, on_generation=on_generation)  # fmt: skip


def _search_pool(pool: _Pool, searched: tuple[torch.Tensor, torch.Tensor], cfg: Config, seed: int,
                 on_generation: Callable[[], None] | None = None):  # fmt: skip
    """search_actions on every state of the pool: (P, 12), (P,) best actions and rewards; on_generation()
    after each of its cfg.instant_copy_iters generations.

    The originals keep their searched actions (``searched``, from ``_search_pairs``); each jittered copy
    starts from its original's action, so a shorter search (cfg.instant_copy_iters) finds what the style
    does differently for a darker, bluer or flatter version of the photo.
    """
    gen = torch.Generator().manual_seed(seed * 7919 + 31)
    size = cfg.search_size
    copies = pool.idx_augmented
    if len(copies) == 0:
        return searched
    start = searched[0][pool.source[copies]]
    t = pool.pair[copies]
    before = resize_u8(pool.before[copies], size)
    target = reward.srgb_to_lab(resize_u8(pool.target[t], size))
    weights = None if pool.weights is None else _resize_w(pool.weights[t], size)
    sigma0 = cfg.consensus_sigma if cfg.search_consensus else SEARCH_STEP  # near the original's: consistent
    a, r = search_actions(before, target, start, cfg.instant_copy_iters, cfg.search_popsize, gen, weights,
                          sigma0=sigma0, on_generation=on_generation)  # fmt: skip
    best_a, best_r = torch.zeros(len(pool), 12), torch.zeros(len(pool))
    best_a[pool.idx_original], best_r[pool.idx_original] = searched
    best_a[copies], best_r[copies] = a, r
    return best_a, best_r


def validation_delta_e(model: PersonalModel, pairs: PairSet, idx: list[int] | np.ndarray) -> float:
    """Mean (weighted) dE00 of any model's edits of pairs idx to their afters, as fine-tuning validates.

    Compares a new personal model with the editor's active one on the new job's validation pairs.
    """
    idx = np.asarray(idx, dtype=np.int64)
    before = torch.from_numpy(pairs.before[idx])
    edited = edit(before, model.predict_actions(torch.from_numpy(pairs.views[idx])))
    weights = None if pairs.weights is None else torch.from_numpy(pairs.weights[idx])
    return float(
        reward.mean_delta_e(edited, reward.srgb_to_lab(torch.from_numpy(pairs.after[idx])), weights).mean()
    )


def distort(target: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Distort-and-recover: random editor adjustments and camera-like jitter of uint8 (N, 64, 64, 3)."""
    n = target.shape[0]
    x = edit(target, random_editor_actions(n, gen))
    return camera_jitter(x, gen, 1.0)


def train_base(
    images: list[np.ndarray],
    seconds: float = 300.0,
    seed: int = 0,
    *,
    n_train: int | None = None,
    n_val: int = 200,
    max_steps: int | None = None,
    config: Config | None = None,
    checkpoint_path: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    source: str = "",
    untouched_share: float = 0.0,
) -> FinetuneResult:
    """Learns a generic enhancer from photos by distort-and-recover; returns the base model (kind 'base').

    n_train: distorted crops in the pool (default: 15 per second of budget, 300..4000, so that building the
    pool stays a small part of short budgets). untouched_share: crops left undistorted (their target is
    themselves), to teach the base to leave good photos alone; 0 as shipped (docs/agent.md measures 0.25).
    """
    if n_train is None:
        n_train = int(np.clip(seconds * 15, 300, 4000))

    t_start = time.monotonic()
    cfg = copy.deepcopy(
        config
        or Config(
            eps_start=0.5,
            eps_decay_fraction=0.7,
            aug_copies=0,
            p_original=1.0,
            val_every=25,
            patience=10_000,
            l2_to_start=0.0,
            noise_max=0.3,
            actor_dropout=0.0,
            feat_noise=0.0,
        )
    )
    with torch_threads(cfg.threads):
        return _train_base(images, seconds, seed, n_train, n_val, max_steps, cfg, checkpoint_path, on_progress,
                           should_stop, source, untouched_share, t_start)  # fmt: skip


def _train_base(images, seconds, seed, n_train, n_val, max_steps, cfg, checkpoint_path, on_progress, should_stop,
                source, untouched_share, t_start) -> FinetuneResult:  # fmt: skip
    rng = np.random.default_rng(seed)
    crops = random_crops(images, n_train + n_val, rng, size=THUMB_SIZE)
    gen = torch.Generator().manual_seed(seed + 1)
    target = torch.from_numpy(crops)
    before = distort(target, gen)
    # Some photos come well exposed and balanced: their target is themselves (leave such photos alone)
    if untouched_share > 0:
        untouched = torch.rand(len(target), generator=gen) < untouched_share
        before[untouched] = target[untouched]
    pool = _Pool(
        before[:n_train],
        torch.arange(n_train),
        torch.ones(n_train, dtype=torch.bool),
        target[:n_train],
        None,
        env_size=cfg.env_size,
    )
    val = _Val(before[n_train:], target[n_train:], None)
    torch.manual_seed(seed)
    actor = Actor(N_FEATURES, cfg.actor_hidden, cfg.conv_channels)
    critic = Critic(N_FEATURES, cfg.critic_hidden)
    mean, std = pool.feats.mean(0), pool.feats.std(0).clamp_min(1e-3)
    for m in (actor, critic):
        m.feat_mean.copy_(mean)
        m.feat_std.copy_(std)
    fp = _fingerprint(crops, extra=f"{seed}|{asdict(cfg)}")
    val_no_edit = val.delta_e(None)
    info = _train(
        pool, val, actor, critic, cfg, seed, seconds, max_steps,
        Path(checkpoint_path) if checkpoint_path is not None else None,
        should_stop, on_progress, fp, t_start,
    )  # fmt: skip
    strength, scores = calibrate_strength(val, actor)
    metrics = {
        "val_delta_e_no_edit": round(val_no_edit, 4),
        "val_delta_e_base": round(scores[strength], 4),
        "val_delta_e_unscaled": round(scores[1.0], 4),
        "strength": strength,
        "untouched_share": untouched_share,
        "steps": info["steps"],
        "env_steps": info["env_steps"],
        "best_step": info["best_step"],
        "train_pairs": n_train,
        "val_pairs": n_val,
        "photos": len(images),
        "seconds": round(time.monotonic() - t_start, 2),
        "seed": seed,
    }
    model = PersonalModel(
        actor,
        critic,
        metadata={
            "kind": "base",
            "metrics": metrics,
            "config": asdict(cfg),
            "source": source,
            "strength": strength,
        },
    )
    return FinetuneResult(model=model, metrics=metrics, curve=info["curve"])
