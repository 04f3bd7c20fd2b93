"""Policy and value networks, and the linear feature baseline of the original MAML-RL code.

Policies return a distribution object (:class:`DiagGaussian` or :class:`Categorical`) whose
``log_prob``, ``entropy`` and ``kl`` are written out by hand (no ``torch.distributions``
argument validation), so they run unchanged under ``torch.func.vmap`` and with explicit
parameter dicts via :func:`metarl.adaptation.functional_forward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

__all__ = [
    "mlp",
    "WEIGHT_INITS",
    "DiagGaussian",
    "Categorical",
    "GaussianMLPPolicy",
    "CategoricalMLPPolicy",
    "ValueNetwork",
    "LinearFeatureBaseline",
    "make_policy",
]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


WEIGHT_INITS = ("torch", "glorot")
"""Weight initialisations of :func:`mlp`: PyTorch's ``nn.Linear`` default, or Glorot-uniform weights with
zero biases (rllab's ``GlorotUniform`` / pytorch-maml-rl's ``xavier_uniform_``, the original MAML-RL policy)."""


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu",
        init: str = "torch") -> nn.Sequential:
    """A fully connected network ``in -> hidden... -> out`` with ``activation`` between layers.

    ``init`` is one of :data:`WEIGHT_INITS`: ``"torch"`` keeps ``nn.Linear``'s default
    (uniform with bound ``1/sqrt(fan_in)``), ``"glorot"`` draws every weight matrix Glorot-uniform
    (bound ``sqrt(6/(fan_in+fan_out))``) and zeroes the biases.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
    if init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight init {init!r}; choose from {list(WEIGHT_INITS)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if init == "glorot":
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class DiagGaussian(NamedTuple):
    """Diagonal Gaussian over action vectors (last axis)."""

    mean: torch.Tensor
    log_std: torch.Tensor

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1).expand(self.mean.shape[:-1])

    def kl(self, other: "DiagGaussian") -> torch.Tensor:
        """KL(self || other), per sample."""
        var, var_o = torch.exp(2 * self.log_std), torch.exp(2 * other.log_std)
        return (other.log_std - self.log_std + (var + (self.mean - other.mean).pow(2)) / (2 * var_o) - 0.5).sum(-1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + torch.exp(self.log_std) * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def detach(self) -> "DiagGaussian":
        return DiagGaussian(self.mean.detach(), self.log_std.detach())


class Categorical(NamedTuple):
    """Categorical over the last axis of ``logits``."""

    logits: torch.Tensor

    def _log_p(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.gather(self._log_p(), -1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        log_p = self._log_p()
        return -(log_p.exp() * log_p).sum(-1)

    def kl(self, other: "Categorical") -> torch.Tensor:
        log_p, log_q = self._log_p(), other._log_p()
        return (log_p.exp() * (log_p - log_q)).sum(-1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = torch.softmax(self.logits, dim=-1).reshape(-1, self.logits.shape[-1])
        return torch.multinomial(probs, 1, generator=generator).reshape(self.logits.shape[:-1])

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def detach(self) -> "Categorical":
        return Categorical(self.logits.detach())


class GaussianMLPPolicy(nn.Module):
    """MLP mean with a state-independent learned log standard deviation (MAML-RL's policy).

    The network acts in the normalised action space ``[-1, 1]^d``; ``action_low``/``action_high``
    map it affinely onto the env's Box (as rllab's ``normalize`` wrapper did in the original MAML
    experiments), so ``init_std`` is relative to the action range. Actions are not squashed: the env
    clips them.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden: hidden layer sizes (MAML: ``(100, 100)``).
        activation: ``"relu"`` or ``"tanh"``.
        init_std: initial standard deviation, in normalised action units.
        min_log_std: lower clamp on the (normalised) log standard deviation.
        action_low, action_high: the env's action bounds (default ``-1``/``1``: no rescaling).
        init: weight initialisation of the mean network (see :data:`WEIGHT_INITS`).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (100, 100), activation: str = "relu",
                 init_std: float = 1.0, min_log_std: float = -6.0, action_low: Sequence[float] | None = None,
                 action_high: Sequence[float] | None = None, init: str = "torch"):
        super().__init__()
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.mean_net = mlp(obs_dim, hidden, act_dim, activation, init)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = min_log_std
        self.obs_dim, self.act_dim = obs_dim, act_dim
        low = torch.full((act_dim,), -1.0) if action_low is None else torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.full((act_dim,), 1.0) if action_high is None else torch.as_tensor(action_high, dtype=torch.float32)
        if low.shape != (act_dim,) or high.shape != (act_dim,) or not torch.all(high > low):
            raise ValueError(f"action bounds must be {act_dim} finite pairs with low < high, got {low}, {high}")
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_center", (high + low) / 2)

    def forward(self, obs: torch.Tensor) -> DiagGaussian:
        mean = self.action_center + self.action_scale * self.mean_net(obs)
        log_std = torch.clamp(self.log_std, min=self.min_log_std) + torch.log(self.action_scale)
        return DiagGaussian(mean, log_std.expand_as(mean))


class CategoricalMLPPolicy(nn.Module):
    """MLP logits over a discrete action set."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (100, 100), activation: str = "relu",
                 init: str = "torch"):
        super().__init__()
        self.logits_net = mlp(obs_dim, hidden, n_actions, activation, init)
        self.obs_dim, self.n_actions = obs_dim, n_actions

    def forward(self, obs: torch.Tensor) -> Categorical:
        return Categorical(self.logits_net(obs))


class ValueNetwork(nn.Module):
    """MLP state-value function ``V(s)``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh"):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def make_policy(observation_space: spaces.Space, action_space: spaces.Space, hidden: Sequence[int] = (100, 100),
                activation: str = "relu", init_std: float = 1.0, init: str = "torch") -> nn.Module:
    """Gaussian policy for Box actions, categorical for Discrete ones (``init``: see :data:`WEIGHT_INITS`)."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"policies take flat Box observations, got {observation_space}; flatten it with "
                         "gymnasium.wrappers.FlattenObservation")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        bounded = bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))
        return GaussianMLPPolicy(obs_dim, action_space.shape[0], hidden, activation, init_std,
                                 action_low=action_space.low if bounded else None,
                                 action_high=action_space.high if bounded else None, init=init)
    if isinstance(action_space, spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden, activation, init)
    raise ValueError(f"unsupported action space {action_space}: need a flat Box or Discrete")


class LinearFeatureBaseline:
    """Per-task linear value baseline on ``[s, s^2, t, t^2, t^3, 1]`` (Duan et al. 2016; MAML-RL).

    Fit by ridge regression on the returns of one task's episodes, then used to predict that task's
    values. Batched over tasks: inputs have shape ``(tasks, episodes, T, ...)``.

    Args:
        reg_coeff: initial ridge coefficient; multiplied by 10 until the solve is finite.
        time_scale: time feature is ``t / time_scale`` (100 in the original code).
    """

    def __init__(self, reg_coeff: float = 1e-5, time_scale: float = 100.0):
        self.reg_coeff, self.time_scale = reg_coeff, time_scale

    def features(self, observations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = torch.arange(observations.shape[-2], dtype=observations.dtype) / self.time_scale
        t = t.expand(observations.shape[:-1]).unsqueeze(-1)
        obs = observations.clamp(-10, 10)
        feats = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
        return feats * mask.unsqueeze(-1)

    @torch.no_grad()
    def fit_predict(self, observations: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fit one baseline per task (leading axis) and return its values, shaped like ``returns``."""
        x = self.features(observations.double(), mask.double())
        n_tasks, n_feat = x.shape[0], x.shape[-1]
        xf = x.reshape(n_tasks, -1, n_feat)
        yf = (returns.double() * mask.double()).reshape(n_tasks, -1, 1)
        xtx, xty = xf.transpose(1, 2) @ xf, xf.transpose(1, 2) @ yf
        eye = torch.eye(n_feat, dtype=torch.float64)
        reg = self.reg_coeff
        for _ in range(5):
            coeffs = torch.linalg.solve(xtx + reg * eye, xty)
            if torch.isfinite(coeffs).all():
                break
            reg *= 10
        values = (xf @ coeffs).reshape(returns.shape)
        return values.to(returns.dtype) * mask


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """1 - Var[y_true - y_pred] / Var[y_true] (SB3's diagnostic for value fits)."""
    var = np.var(y_true)
    return float("nan") if var == 0 else float(1 - np.var(y_true - y_pred) / var)
