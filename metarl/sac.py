"""Soft actor-critic pieces (Haarnoja et al. 2018, the twin-Q version with a learned temperature), batched over tasks.

Networks take inputs with any leading shape, e.g. ``(tasks, batch, dim)``: PEARL conditions them on a
latent task ``z`` by concatenating it to the observation. Actions live in ``[-1, 1]^d`` (a tanh-squashed
Gaussian); :class:`ActionScaler` maps them to and from the family's bounded Box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from metarl.networks import mlp

__all__ = ["TanhGaussianPolicy", "PolicySample", "TwinQ", "ActionScaler", "soft_q_target", "soft_update"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class PolicySample(NamedTuple):
    """Actions in ``[-1, 1]`` with their log-probabilities and the Gaussian's parameters."""

    actions: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor
    pre_tanh: torch.Tensor


class TanhGaussianPolicy(nn.Module):
    """``pi(a | x) = tanh(N(mu(x), sigma(x)^2))``, the SAC actor.

    Args:
        in_dim: input size (observation, plus the latent task for PEARL).
        act_dim: action size.
        hidden_sizes: hidden layers (ReLU).
    """

    def __init__(self, in_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(in_dim, list(hidden_sizes), 2 * act_dim)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False) -> PolicySample:
        """A reparameterised sample (``deterministic``: the mode ``tanh(mu)``) and its log-probability."""
        out = self.net(x)
        mean, log_std = out[..., :self.act_dim], out[..., self.act_dim:].clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        if deterministic:
            u = mean
        else:
            # drawn where the generator is (a CPU generator: the same noise whatever device the networks use)
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                              device=generator.device if generator is not None else mean.device).to(mean.device)
            u = mean + std * eps
        # log N(u; mean, std) - sum log(1 - tanh(u)^2), the latter as 2 (log 2 - u - softplus(-2u)) (stable)
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return PolicySample(torch.tanh(u), log_prob, mean, log_std, u)


class TwinQ(nn.Module):
    """Two independent Q networks ``Q_i(x, a)`` (clipped double-Q)."""

    def __init__(self, in_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        self.q1 = mlp(in_dim + act_dim, list(hidden_sizes), 1)
        self.q2 = mlp(in_dim + act_dim, list(hidden_sizes), 1)

    def forward(self, x: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both Q values, each of the leading shape of ``x``."""
        xa = torch.cat([x, actions], dim=-1)
        return self.q1(xa).squeeze(-1), self.q2(xa).squeeze(-1)


def soft_q_target(rewards: torch.Tensor, terminals: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor,
                  alpha: float | torch.Tensor, gamma: float, reward_scale: float = 1.0) -> torch.Tensor:
    """The soft Bellman target ``scale * r + gamma * (1 - done) * (min_i Q'_i(s', a') - alpha * log pi(a' | s'))``.

    ``next_q`` is already the minimum of the target networks at ``a' ~ pi(. | s')``.
    """
    return reward_scale * rewards + gamma * (1.0 - terminals) * (next_q - alpha * next_log_prob)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) * target + tau * source``."""
    t_params = list(target.parameters())
    s_params = list(source.parameters())
    torch._foreach_lerp_(t_params, s_params, tau)


class ActionScaler:
    """Maps actions between the policy's ``[-1, 1]^d`` and a bounded Box.

    Raises:
        ValueError: the space is not a Box with finite bounds (SAC's squashed Gaussian needs them).
    """

    def __init__(self, space: spaces.Space, who: str = "SAC"):
        if not isinstance(space, spaces.Box):
            raise ValueError(f"{who} needs a continuous (Box) action space, got {type(space).__name__}: use "
                             "rl2-ppo or maml-trpo for discrete actions")
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"{who} needs finite action bounds (its tanh policy is scaled to them), got "
                             f"low={low.tolist()}, high={high.tolist()}")
        self.shape = tuple(space.shape)
        self.low = torch.as_tensor(low.reshape(-1), dtype=torch.float32)
        self.high = torch.as_tensor(high.reshape(-1), dtype=torch.float32)
        self.dim = int(self.low.numel())

    def to_env(self, unit: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` -> the Box (flat actions ``(..., dim)`` -> ``(..., *shape)``)."""
        out = self.low + (unit + 1.0) * 0.5 * (self.high - self.low)
        return out.reshape(*unit.shape[:-1], *self.shape)

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """The Box -> ``[-1, 1]`` (``(..., *shape)`` -> flat ``(..., dim)``), clipped."""
        flat = actions.reshape(*actions.shape[:actions.dim() - len(self.shape)], self.dim).float()
        return (2.0 * (flat - self.low) / (self.high - self.low) - 1.0).clamp(-1.0, 1.0)

