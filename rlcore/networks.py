"""Every network a model file can hold, and how to run them (no training here: rlcore.agent, rlcore.prior).

* the plain family (rlcore.agent's fine-tuning and base model): ``Actor`` pi(s) and ``Critic`` Q(s, a);
  ``DistilledActor`` blends the RL actor with ``LinearPolicy``, the ridge policy fitted after fine-tuning;
  ``LinearStylePrior`` says how such linear policies are distributed across styles (a style prior's);
* the style family (rlcore.prior): ``StyleEncoder`` reads an editor's pairs into a style code z,
  ``StylePolicy`` pi(s, z) and ``StyleCritic`` Q(s, z, a); ``StyleActor`` and ``FixedStyleCritic`` fix
  one style's code and so offer the plain family's interface, which fine-tuning and serving use.

Every network reads ``rlcore.features.features`` of the state, standardised by the buffers
``feat_mean`` / ``feat_std`` that training sets from its states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlcore.features import N_EDIT_STATISTICS, N_FEATURES, edit_statistics, features, resize_u8

__all__ = ["Actor", "Critic", "LinearPolicy", "DistilledActor", "LinearStylePrior", "StyleEncoder", "StylePolicy", "StyleCritic",
           "StyleActor", "FixedStyleCritic", "InverseEditor", "pair_features", "mlp_with_dropout", "n_params", "torch_threads"]  # fmt: skip


# ------------------------------------------------------------------------------------------------------
# The plain family: actor, critic, distilled linear policy
# ------------------------------------------------------------------------------------------------------


class Actor(nn.Module):
    """pi(s): features (MLP) + a tiny conv over the 16x16 thumbnail -> 12 sliders in [-1, 1]."""

    def __init__(
        self, n_features: int = N_FEATURES, hidden: int = 128, conv_channels: int = 16, n_actions: int = 12
    ):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        c = conv_channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.mlp = nn.Sequential(
            nn.Linear(n_features + 2 * c, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )
        with torch.no_grad():  # start near "no edit"
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()

    def forward(
        self, feats: torch.Tensor, conv_x: torch.Tensor, drop: float = 0.0, noise: float = 0.0
    ) -> torch.Tensor:
        """drop, noise: dropout and feature noise for the actor's training step only (0 when acting)."""
        h = self.conv(conv_x)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        f = (feats - self.feat_mean) / self.feat_std
        if noise > 0:
            f = f + noise * torch.randn_like(f)
        return torch.tanh(mlp_with_dropout(self.mlp, torch.cat([f, h], 1), drop))


def mlp_with_dropout(mlp: nn.Sequential, x: torch.Tensor, drop: float) -> torch.Tensor:
    """mlp(x), with dropout of rate drop on its input and after every ReLU when drop > 0 (training only)."""
    if drop <= 0:
        return mlp(x)
    x = F.dropout(x, drop, True)
    for m in mlp:
        x = m(x)
        if isinstance(m, nn.ReLU):
            x = F.dropout(x, drop, True)
    return x


class Critic(nn.Module):
    """Q(s, a): predicted reward of editing state s with action a; Q(s, 0) = 0 exactly (no edit, no gain)."""

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 256, n_actions: int = 12):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.net = nn.Sequential(
            nn.Linear(n_features + n_actions, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, feats: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        f = (feats - self.feat_mean) / self.feat_std
        both = torch.cat([torch.cat([f, actions], 1), torch.cat([f, torch.zeros_like(actions)], 1)], 0)
        q = self.net(both).squeeze(1)
        n = feats.shape[0]
        return q[:n] - q[n:]


class LinearPolicy(nn.Module):
    """pi(s) = clamp(W f(s) + b, -1, 1) on standardised features: ``distill``'s least-squares policy."""

    def __init__(self, n_features: int = N_FEATURES, n_actions: int = 12):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.linear = nn.Linear(n_features, n_actions)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear((feats - self.feat_mean) / self.feat_std).clamp(-1, 1)


class DistilledActor(nn.Module):
    """The policy a fine-tuned model serves: actor_share * the RL actor + mix * the distilled linear policy
    (+ other_share * another policy of the same architecture: ``hedged``).

    Same interface as Actor (feats, conv_x) -> actions, so validation, calibration and serving use it as is;
    the RL actor is a plain Actor or a StyleActor (a style prior's policy with the editor's code).
    """

    def __init__(
        self,
        actor: Actor | StyleActor,
        linear: LinearPolicy,
        mix: float = 0.5,
        actor_share: float | None = None,
        other: nn.Module | None = None,
        other_share: float = 0.0,
    ):
        super().__init__()
        self.actor = actor
        self.linear = linear
        self.register_buffer("mix", torch.tensor(float(mix)))  # the linear policy's share
        # the actor's share: 1 - mix for a blend, 1 with mix 1 for the actor plus a linear correction
        self.register_buffer(
            "actor_share", torch.tensor(float(1 - mix if actor_share is None else actor_share))
        )
        self.other = other
        if other is not None:
            self.register_buffer("other_share", torch.tensor(float(other_share)))

    def forward(
        self, feats: torch.Tensor, conv_x: torch.Tensor, drop: float = 0.0, noise: float = 0.0
    ) -> torch.Tensor:
        a = self.actor_share * self.actor(feats, conv_x, drop, noise) + self.mix * self.linear(feats)
        if self.other is not None:
            a = a + self.other_share * self.other(feats, conv_x)
        return a


def blended(first: DistilledActor, second: DistilledActor, share: float) -> DistilledActor:
    """share * first + (1 - share) * second as one DistilledActor, for two distilled policies of the same
    actor (neither hedged): the actor's shares add up and the two linear policies become one, on raw
    statistics, whose clamp to [-1, 1] then applies to their weighted sum rather than to each."""
    if first.actor is not second.actor or first.other is not None or second.other is not None:
        raise ValueError("only two distilled policies of one actor, neither hedged, can be blended")
    parts = [
        (policy, weight * float(policy.mix)) for policy, weight in ((first, share), (second, 1.0 - share))
    ]
    mix = sum(weight for _, weight in parts)
    actor_share = share * float(first.actor_share) + (1.0 - share) * float(second.actor_share)
    linear = LinearPolicy(first.linear.linear.in_features, first.linear.linear.out_features)
    weight = torch.zeros_like(linear.linear.weight, dtype=torch.float64)
    bias = torch.zeros_like(linear.linear.bias, dtype=torch.float64)
    for policy, part in parts:
        if part == 0:
            continue
        raw = policy.linear.linear.weight.double() / policy.linear.feat_std.double()  # on raw statistics
        weight += (part / mix) * raw
        bias += (part / mix) * (policy.linear.linear.bias.double() - raw @ policy.linear.feat_mean.double())
    with torch.no_grad():
        linear.linear.weight.copy_(weight)
        linear.linear.bias.copy_(bias)
    return DistilledActor(first.actor, linear, mix, actor_share).eval()


def hedged(policy: nn.Module, other: nn.Module, share: float) -> DistilledActor:
    """share * policy + (1 - share) * other, as one DistilledActor: policy an actor or a DistilledActor
    without another policy, other an actor or a DistilledActor of the same architecture (kept as it is)."""
    if not isinstance(policy, DistilledActor):
        policy = DistilledActor(policy, LinearPolicy(), mix=0.0, actor_share=1.0)
    if policy.other is not None:
        raise ValueError("a hedged policy is not hedged again")
    return DistilledActor(policy.actor, policy.linear, share * float(policy.mix), share * float(policy.actor_share),
                          other, 1.0 - share).eval()  # fmt: skip


class LinearStylePrior(nn.Module):
    """How the linear policies of many editing styles are distributed: a Gaussian over their weights.

    W (F + 1, 12) maps statistics standardised by ``feat_mean`` / ``feat_std`` (and a 1 for the bias) to
    actions; ``mean`` is the average style's W and ``precision`` the inverse covariance of vec(W), rows
    and columns ordered (slider, statistic), scaled to a mean diagonal of 1 so that a penalty on it reads
    like a ridge penalty. rlcore.prior fits it across generated styles; rlcore.agent.distill can shrink an
    editor's linear policy towards it (how styles in general answer a photo) instead of towards a preset.
    It is no network: it holds no parameters and never acts, but it travels in the prior's model file.
    """

    def __init__(self, n_features: int = N_FEATURES, n_actions: int = 12):
        super().__init__()
        k = (n_features + 1) * n_actions
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.register_buffer("mean", torch.zeros(n_features + 1, n_actions))
        self.register_buffer("precision", torch.eye(k))


class InverseEditor(nn.Module):
    """The editor's inverse (rlcore.inverse trains it): what an edit did to a photo
    (``rlcore.features.edit_statistics`` of the pair) -> the 12 sliders that usually do that, in [-1, 1].
    A base model may carry one; fine-tuning's searches start from its answer (rlcore.agent)."""

    SIZE = 16  # the side of the pairs it reads (and was trained on): the searches' (rlcore.agent.Config)

    def __init__(self, n_in: int = N_EDIT_STATISTICS, hidden: int = 256, n_actions: int = 12):
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(n_in))
        self.register_buffer("in_std", torch.ones(n_in))
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_actions))  # fmt: skip

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net((statistics - self.in_mean) / self.in_std))

    @torch.no_grad()
    def actions(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """uint8 pairs (N, H, W, 3) -> (N, 12) actions in [-1, 1] (the pairs read at SIZE x SIZE)."""
        before, after = resize_u8(before, self.SIZE), resize_u8(after, self.SIZE)
        return self.eval()(edit_statistics(before, after))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------------
# The style family (rlcore.prior trains them)
# ------------------------------------------------------------------------------------------------------


def pair_features(before_feats: torch.Tensor, after_feats: torch.Tensor) -> torch.Tensor:
    """What the encoder reads of one pair: the before's statistics, the after's, and how they differ."""
    return torch.cat([before_feats, after_feats, after_feats - before_feats], -1)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))  # fmt: skip


class StyleEncoder(nn.Module):
    """A set of (before, after) pair features -> a style code (a Deep Sets mean over the pairs)."""

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 128, style_dim: int = 32):
        super().__init__()
        self.register_buffer("pair_mean", torch.zeros(3 * n_features))
        self.register_buffer("pair_std", torch.ones(3 * n_features))
        self.phi = _mlp(3 * n_features, hidden, hidden)
        self.rho = _mlp(hidden, hidden, style_dim)

    def forward(self, pairs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """pairs (B, K, 3F), mask (B, K) of the pairs present -> z (B, style_dim)."""
        h = self.phi((pairs - self.pair_mean) / self.pair_std)
        if mask is None:
            return self.rho(h.mean(1))
        m = mask.unsqueeze(-1).float()
        return self.rho((h * m).sum(1) / m.sum(1).clamp_min(1.0))

    @torch.no_grad()
    def encode(self, before, after) -> torch.Tensor:
        """One editor's pairs, uint8 (N, H, W, 3) each -> z (1, style_dim)."""
        return self(pair_features(features(before), features(after)).unsqueeze(0))


class StylePolicy(nn.Module):
    """pi(s, z): state features and a style code -> 12 sliders in [-1, 1]."""

    def __init__(self, n_features: int = N_FEATURES, style_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.mlp = _mlp(n_features + style_dim, hidden, 12)
        with torch.no_grad():  # start near "no edit"
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()

    def forward(
        self, feats: torch.Tensor, z: torch.Tensor, drop: float = 0.0, noise: float = 0.0
    ) -> torch.Tensor:
        f = (feats - self.feat_mean) / self.feat_std
        if noise > 0:
            f = f + noise * torch.randn_like(f)
        return torch.tanh(mlp_with_dropout(self.mlp, torch.cat([f, z], 1), drop))


class StyleCritic(nn.Module):
    """Q(s, z, a): predicted reward of editing s with a in style z; Q(s, z, 0) = 0 exactly."""

    def __init__(self, n_features: int = N_FEATURES, style_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.net = _mlp(n_features + style_dim + 12, hidden, 1)

    def forward(self, feats: torch.Tensor, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        f = torch.cat([(feats - self.feat_mean) / self.feat_std, z], 1)
        both = torch.cat([torch.cat([f, actions], 1), torch.cat([f, torch.zeros_like(actions)], 1)], 0)
        q = self.net(both).squeeze(1)
        return q[: feats.shape[0]] - q[feats.shape[0] :]


class StyleActor(nn.Module):
    """The policy with one style's code: the plain Actor's interface (feats, conv) -> actions.

    The code is a parameter, so RL fine-tuning refines it together with the policy's weights.
    """

    def __init__(self, policy: StylePolicy, z: torch.Tensor):
        super().__init__()
        self.policy = policy
        self.z = nn.Parameter(z.detach().clone().reshape(1, -1))

    def forward(self, feats, conv_x=None, drop: float = 0.0, noise: float = 0.0) -> torch.Tensor:
        return self.policy(feats, self.z.expand(feats.shape[0], -1), drop, noise)


class FixedStyleCritic(nn.Module):
    """The critic with one style's code fixed: the plain Critic's interface (feats, actions) -> Q."""

    def __init__(self, critic: StyleCritic, z: torch.Tensor):
        super().__init__()
        self.critic = critic
        self.register_buffer("z", z.detach().clone().reshape(1, -1))

    def forward(self, feats, actions) -> torch.Tensor:
        return self.critic(feats, self.z.expand(feats.shape[0], -1), actions)


# ------------------------------------------------------------------------------------------------------
# Running them
# ------------------------------------------------------------------------------------------------------


class torch_threads:
    """Context manager: torch's intra-op threads set to n (0: left as is), restored afterwards.

    These networks and the features are tiny tensor ops: one thread is fastest, and 2 threads on a busy
    2-core machine made every training step ~20x and every prediction ~50x slower (OpenMP barriers).
    """

    def __init__(self, n: int):
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self):
        if self.n > 0:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.n > 0:
            torch.set_num_threads(self.old)
