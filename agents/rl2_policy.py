"""RL^2's recurrent actor-critic, its act function for the trial sampler, and trial batches for PPO."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from metarl.networks import Categorical, DiagGaussian
from metarl.wrappers import RL2TrialBatchedEnv

__all__ = ["ActorCriticHeads", "RecurrentActorCritic", "RecurrentActor", "TrialBatch", "compact_trials"]


# ---------------------------------------------------------------------------------------------------
# Recurrent actor-critic
# ---------------------------------------------------------------------------------------------------


class ActorCriticHeads(nn.Module):
    """The policy and value heads an RL^2 memory (GRU or transformer) puts on its features.

    A subclass builds its memory, then calls :meth:`_make_heads` with the feature width, and implements
    ``initial_state(batch_size)``, ``forward(inputs, state=None) -> (distribution, values, state)`` over whole
    trials ``(B, T, input_dim)`` and ``step(inputs, state, active=None) -> (distribution, state)`` for one step.
    """

    discrete: bool

    def _make_heads(self, features: int, action_space: spaces.Space, init_std: float) -> None:
        self.discrete = isinstance(action_space, spaces.Discrete)
        if not self.discrete and not (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1):
            raise ValueError(f"unsupported action space {action_space}: need Discrete or a flat Box")
        out_dim = int(action_space.n) if self.discrete else int(action_space.shape[0])
        self.policy_head = nn.Linear(features, out_dim)
        self.value_head = nn.Linear(features, 1)
        # small initial policy outputs: a near-uniform (or init_std-wide) first policy, as in CleanRL
        nn.init.orthogonal_(self.policy_head.weight, gain=0.01)
        nn.init.zeros_(self.policy_head.bias)
        nn.init.orthogonal_(self.value_head.weight, gain=1.0)
        nn.init.zeros_(self.value_head.bias)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out_dim,), math.log(init_std)))

    def distribution(self, features: torch.Tensor) -> Categorical | DiagGaussian:
        """Action distribution from memory features ``(..., features)``."""
        out = self.policy_head(features)
        if self.discrete:
            return Categorical(out)
        return DiagGaussian(out, self.log_std.expand_as(out))


class RecurrentActorCritic(ActorCriticHeads):
    """A GRU over RL^2 inputs with a policy head and a value head on its state.

    Args:
        input_dim: width of the RL^2 input.
        action_space: ``Discrete`` (categorical policy) or flat ``Box`` (diagonal Gaussian with a
            state-independent learned log standard deviation).
        hidden_size: GRU state size.
        init_std: initial standard deviation of a Gaussian policy.
    """

    def __init__(self, input_dim: int, action_space: spaces.Space, hidden_size: int = 128, init_std: float = 1.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_dim, hidden_size, batch_first=True)
        self._make_heads(hidden_size, action_space, init_std)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The state at the start of a trial: zeros ``(1, batch_size, hidden_size)``."""
        return torch.zeros(1, batch_size, self.hidden_size, device=self.value_head.weight.device)

    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[Categorical | DiagGaussian, torch.Tensor, torch.Tensor]:
        """Run whole sequences ``(B, T, input_dim)`` from ``state`` (zeros: trial start).

        Returns:
            The action distribution and the values, each over ``(B, T)``, and the final state.
        """
        if state is None:
            state = self.initial_state(inputs.shape[0])
        features, last = self.gru(inputs, state)
        return self.distribution(features), self.value_head(features).squeeze(-1), last

    def step(self, inputs: torch.Tensor, state: torch.Tensor, active: torch.Tensor | None = None
             ) -> tuple[Categorical | DiagGaussian, torch.Tensor]:
        """One step ``(B, input_dim)``; the state of rows where ``active`` is false stays as it was."""
        features, new_state = self.gru(inputs.unsqueeze(1), state)
        if active is not None:
            new_state = torch.where(active.view(1, -1, 1), new_state, state)
        return self.distribution(features.squeeze(1)), new_state


class RecurrentActor:
    """The sampler's act function for a trial backend: it carries the memory's state (a GRU state, a transformer's
    key/value cache) through the trial.

    A new actor (zero state) is made for every batch of trials, so the state is reset between
    trials and only there.

    Args:
        net: the actor-critic.
        backend: the trial backend the sampler steps (its ``active`` flags freeze idle simulations).
        deterministic: take the most likely action instead of sampling one.
    """

    def __init__(self, net: ActorCriticHeads, backend: RL2TrialBatchedEnv, deterministic: bool = False):
        self.net, self.backend, self.deterministic = net, backend, deterministic
        self.state: Any = None

    def __call__(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lead = obs.shape[:2]
        flat = obs.reshape(-1, obs.shape[-1])
        if self.state is None:
            self.state = self.net.initial_state(flat.shape[0])
        active = torch.as_tensor(self.backend.active)
        dist, self.state = self.net.step(flat, self.state, active)
        action = dist.mode() if self.deterministic else dist.sample(generator)
        return action.reshape(*lead, *action.shape[1:])


# ---------------------------------------------------------------------------------------------------
# Trial batches
# ---------------------------------------------------------------------------------------------------


@dataclass
class TrialBatch:
    """Trials with their valid steps packed to the left, ``(N, L, ...)``; ``mask`` marks the real steps."""

    inputs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


def compact_trials(inputs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                   mask: torch.Tensor) -> TrialBatch:
    """Drop the idle steps of trials: ``(..., T, ...)`` tensors with a holed ``mask`` -> a :class:`TrialBatch`.

    The leading axes (tasks, trials) are flattened; each trial's valid steps keep their order, so
    the recurrent state computed over them is the one the policy had while acting.
    """
    lead = mask.shape[:-1]
    T = mask.shape[-1]
    m = mask.reshape(-1, T) > 0
    n = m.shape[0]
    lengths = m.sum(1)
    length = max(int(lengths.max()), 1)
    order = torch.argsort((~m).to(torch.int8), dim=1, stable=True)[:, :length]

    def take(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n, T, *x.shape[len(lead) + 1:])
        index = order.reshape(n, length, *([1] * (x.dim() - 2))).expand(n, length, *x.shape[2:])
        return torch.gather(x, 1, index)

    packed_mask = (torch.arange(length, device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return TrialBatch(take(inputs), take(actions), take(rewards) * packed_mask, packed_mask)
