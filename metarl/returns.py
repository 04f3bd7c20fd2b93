"""Discounted returns and generalized advantage estimation (GAE) over masked episode tensors.

Time is the last axis. ``mask`` is 1 on steps that belong to the episode and 0 after it ended,
so episodes of different lengths share one tensor; nothing after an episode's end leaks into
its returns.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["discounted_returns", "gae", "masked_normalize", "masked_mean", "ci95"]


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_k gamma^k r_{t+k}`` within each episode; zero on masked steps."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running * mask[..., t]
        out[..., t] = running
    return out * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
        last_values: torch.Tensor | None = None) -> torch.Tensor:
    """Generalized advantage estimates (Schulman et al. 2016).

    Args:
        rewards, values, mask: ``(..., T)`` tensors; ``values[..., t] = V(s_t)``.
        gamma: discount.
        lam: GAE lambda (1 gives Monte-Carlo returns minus values, 0 gives TD(0) errors).
        last_values: ``V(s_T)`` to bootstrap from when the rollout was cut at ``T`` without the
            episode ending (shape ``(...)``); zero (episode over) when omitted.
    """
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    T = rewards.shape[-1]
    next_values = torch.zeros_like(values)
    next_values[..., :-1] = values[..., 1:] * mask[..., 1:]
    if last_values is not None:
        next_values[..., -1] = last_values * mask[..., -1]
    deltas = (rewards + gamma * next_values - values) * mask
    adv = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[..., 0])
    for t in range(T - 1, -1, -1):
        nxt = mask[..., t + 1] if t + 1 < T else torch.ones_like(running)
        running = deltas[..., t] + gamma * lam * running * nxt
        adv[..., t] = running
    return adv * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: tuple[int, ...] | int | None = None) -> torch.Tensor:
    """Mean of ``x`` over unmasked entries (along ``dim``, or all)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_normalize(x: torch.Tensor, mask: torch.Tensor, dim: tuple[int, ...] | int | None = None,
                     eps: float = 1e-8) -> torch.Tensor:
    """Zero-mean, unit-variance ``x`` over unmasked entries; masked entries become 0."""
    mean = masked_mean(x, mask, dim)
    if dim is not None:
        mean = _expand(mean, x, dim)
    centered = (x - mean) * mask
    var = masked_mean(centered**2, mask, dim)
    std = torch.sqrt(var) if dim is None else _expand(torch.sqrt(var), x, dim)
    return centered / (std + eps)


def _expand(stat: torch.Tensor, like: torch.Tensor, dim: tuple[int, ...] | int) -> torch.Tensor:
    dims = (dim,) if isinstance(dim, int) else dim
    dims = sorted(d % like.dim() for d in dims)
    for d in dims:
        stat = stat.unsqueeze(d)
    return stat


def ci95(values: np.ndarray, student_t: bool = False) -> float:
    """Half-width of the normal 95% interval of the mean of ``values`` (per-task returns); 0 for one value.

    ``student_t=True``: Student's t quantile instead of 1.96, for a few values (the mean over seeds).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return 0.0
    quantile = 1.96
    if student_t:
        from scipy.stats import t

        quantile = float(t.ppf(0.975, len(values) - 1))
    return float(quantile * values.std(ddof=1) / math.sqrt(len(values)))
