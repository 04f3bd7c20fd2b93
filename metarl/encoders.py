"""Task inference from context: :class:`TaskEncoder`, PEARL's permutation-invariant posterior over a latent task.

A context is a set of transitions of one task, each the vector ``[s, a, r]`` (``[s, a, r, s']`` with
``use_next_obs``; :func:`make_context` builds it). The encoder maps every transition independently to a
Gaussian factor ``N(mu_n, sigma_n^2)`` over the latent task variable ``z`` and multiplies the factors
(Rakelly et al. 2019, eq. 3)::

    1 / sigma^2 = sum_n 1 / sigma_n^2        mu = sigma^2 * sum_n mu_n / sigma_n^2

so the posterior does not depend on the order of the transitions and, as factors accumulate, its
variance can only shrink. An empty context gives the prior ``N(0, I)``. ``aggregator="mean"`` replaces the
product by a deep-sets encoder (features averaged over the context, then an MLP to the posterior). :meth:`TaskEncoder.kl_to_prior`
is the information bottleneck ``KL(q(z | c) || N(0, I))`` PEARL adds to the critic's loss.

Any agent can condition on ``z``: PEARL's SAC (``metarl/agents/pearl.py``), or a policy of your own::

    encoder = TaskEncoder(TaskEncoder.transition_dim(obs_dim, act_dim), latent_dim=5)
    posterior = encoder(make_context(obs, actions, rewards))     # context (tasks, n, dim) -> batch (tasks,)
    z = posterior.rsample()                                      # (tasks, latent_dim)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal
from torch.nn import functional as F

from metarl.networks import mlp

__all__ = ["TaskEncoder", "make_context", "product_of_gaussians", "AGGREGATORS"]

#: how :class:`TaskEncoder` combines a context's transitions
AGGREGATORS = ("product", "mean")


def product_of_gaussians(means: torch.Tensor, variances: torch.Tensor,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the normalised product of Gaussian factors along axis ``-2``.

    Args:
        means, variances: ``(..., n, latent_dim)`` factors.
        mask: optional ``(..., n)``, 1 for the factors to use and 0 for padding.

    Returns:
        ``(mean, variance)`` of shape ``(..., latent_dim)``; a set with no factor gets the prior ``N(0, 1)``.
    """
    precision = 1.0 / variances
    if mask is not None:
        precision = precision * mask.unsqueeze(-1).to(precision.dtype)
    total = precision.sum(-2)
    empty = total <= 0
    safe_total = torch.where(empty, torch.ones_like(total), total)
    variance = torch.where(empty, torch.ones_like(total), 1.0 / safe_total)
    mean = torch.where(empty, torch.zeros_like(total), variance * (means * precision).sum(-2))
    return mean, variance


def make_context(observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                 next_observations: torch.Tensor | None = None) -> torch.Tensor:
    """Transitions ``(..., obs_dim)``, ``(..., act_dim)``, ``(...)`` [, ``(..., obs_dim)``] as context vectors
    ``[s, a, r(, s')]`` of shape ``(..., transition_dim)``."""
    lead = rewards.shape

    def features(x: torch.Tensor) -> torch.Tensor:  # (..., *shape) -> (..., prod(shape)); scalars get an axis
        return x.unsqueeze(-1) if x.dim() == rewards.dim() else x.flatten(rewards.dim())

    parts = [features(observations), features(actions), rewards.unsqueeze(-1)]
    if next_observations is not None:
        parts.append(features(next_observations))
    for part in parts:
        if part.shape[:-1] != lead:
            raise ValueError(f"context parts must share the leading shape {tuple(lead)} of the rewards, got "
                             f"{[tuple(p.shape) for p in parts]}")
    return torch.cat([p.to(torch.float32) for p in parts], dim=-1)


class TaskEncoder(nn.Module):
    """Context of transitions -> Gaussian posterior over a latent task variable ``z`` (product of factors).

    Args:
        transition_dim: length of one context vector (:meth:`transition_dim`).
        latent_dim: size of ``z`` (PEARL: 5).
        hidden_sizes: the per-transition MLP's hidden layers (PEARL: three of 200).
        min_variance: floor of each factor's variance (keeps the product finite).
        aggregator: ``"product"`` (PEARL's product of per-transition Gaussian factors) or ``"mean"`` (deep sets,
            Zaheer et al. 2017: the per-transition MLP's features, ReLU, averaged over the context, then an MLP
            of one hidden layer to the posterior's mean and variance; it can combine transitions non-linearly,
            e.g. solve for a goal that each transition places on a ring).

    Raises:
        ValueError: a size that is not a positive integer, or an unknown ``aggregator``.
    """

    def __init__(self, transition_dim: int, latent_dim: int = 5, hidden_sizes: Sequence[int] = (200, 200, 200),
                 min_variance: float = 1e-7, aggregator: str = "product"):
        super().__init__()
        for name, value in (("transition_dim", transition_dim), ("latent_dim", latent_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TaskEncoder: {name} must be a positive integer, got {value!r}")
        if aggregator not in AGGREGATORS:
            raise ValueError(f"TaskEncoder: aggregator must be one of {list(AGGREGATORS)}, got {aggregator!r}")
        self.input_dim, self.latent_dim, self.min_variance = transition_dim, latent_dim, float(min_variance)
        self.aggregator = aggregator
        if aggregator == "product":
            self.net = mlp(transition_dim, list(hidden_sizes), 2 * latent_dim)
        else:
            width = list(hidden_sizes)[-1] if hidden_sizes else 2 * latent_dim
            self.net = nn.Sequential(mlp(transition_dim, list(hidden_sizes)[:-1], width), nn.ReLU())
            self.head = mlp(width, [width], 2 * latent_dim)

    @staticmethod
    def transition_dim(obs_dim: int, act_dim: int, use_next_obs: bool = False) -> int:
        """Length of a context vector ``[s, a, r(, s')]``."""
        return obs_dim * (2 if use_next_obs else 1) + act_dim + 1

    def _check(self, context: torch.Tensor) -> None:
        if context.dim() < 2 or context.shape[-1] != self.input_dim:
            raise ValueError(f"TaskEncoder: context must be (..., n, {self.input_dim}), got {tuple(context.shape)}")

    def _gaussian(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and variances (softplus, floored at ``min_variance``) from a network's ``2 * latent_dim`` outputs."""
        return out[..., :self.latent_dim], F.softplus(out[..., self.latent_dim:]).clamp_min(self.min_variance)

    def factors(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each transition's factor (the product aggregator): means and variances ``(..., n, latent_dim)``."""
        self._check(context)
        if self.aggregator != "product":
            raise ValueError("TaskEncoder.factors: only the product aggregator has per-transition factors")
        return self._gaussian(self.net(context))

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> Normal:
        """The posterior ``q(z | context)``, a ``Normal`` with batch shape ``(..., latent_dim)``.

        Args:
            context: ``(..., n, transition_dim)``; ``n`` may be 0 (the prior).
            mask: optional ``(..., n)`` of 0/1 marking padded transitions (ragged contexts in one batch).
        """
        self._check(context)
        if context.shape[-2] == 0:
            lead = context.shape[:-2]
            return self.prior(lead, device=context.device)
        if self.aggregator == "product":
            mean, variance = product_of_gaussians(*self.factors(context), mask)
            return Normal(mean, variance.sqrt())
        weights = torch.ones(context.shape[:-1], device=context.device) if mask is None else mask.to(context.dtype)
        count = weights.sum(-1, keepdim=True)
        pooled = (self.net(context) * weights.unsqueeze(-1)).sum(-2) / count.clamp_min(1.0)
        mean, variance = self._gaussian(self.head(pooled))
        empty = count <= 0  # a fully masked context: the prior, as the product's
        mean = torch.where(empty, torch.zeros_like(mean), mean)
        variance = torch.where(empty, torch.ones_like(variance), variance)
        return Normal(mean, variance.sqrt())

    def prior(self, batch_shape: Sequence[int] = (), device: torch.device | str | None = None) -> Normal:
        """The prior ``N(0, I)`` over ``z`` for ``batch_shape`` tasks."""
        shape = (*batch_shape, self.latent_dim)
        return Normal(torch.zeros(shape, device=device), torch.ones(shape, device=device))

    @staticmethod
    def kl_to_prior(posterior: Normal) -> torch.Tensor:
        """``KL(posterior || N(0, I))`` summed over the latent dimensions, shape ``(...)``."""
        mean, var = posterior.loc, posterior.scale ** 2
        return 0.5 * (var + mean ** 2 - 1.0 - torch.log(var)).sum(-1)
