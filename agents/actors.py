"""The act functions the samplers run for MAML's and PEARL's policies (RL^2's is
:class:`metarl.agents.rl2_policy.RecurrentActor`): small picklable objects holding only the policy network and
what conditions it (per-task parameters, latent tasks), so a remote sampler (:mod:`metarl.ray_sampler`) can ship
them to its workers."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import vmap

from metarl.adaptation import Params, functional_forward
from metarl.sac import ActionScaler, TanhGaussianPolicy

__all__ = ["policy_distribution", "PolicyActor", "LatentActor"]


def policy_distribution(policy: torch.nn.Module, params: Params, obs: torch.Tensor, batched: bool) -> Any:
    """The action distribution of ``policy`` run with ``params``; ``batched``: params and observations have a
    leading task axis (one adapted policy per task, through ``vmap``)."""
    if batched:
        return vmap(lambda p, o: functional_forward(policy, p, o))(params, obs)
    return functional_forward(policy, params, obs)


class PolicyActor:
    """The sampler's act function of a MAML policy with explicit (e.g. adapted, per-task) parameters: a small
    picklable object (the policy network and the parameters), so remote samplers can run it.

    Args:
        policy: the policy network.
        params: its parameters (``batched``: with a leading task axis).
        batched: one parameter set per task.
    """

    def __init__(self, policy: torch.nn.Module, params: Params, batched: bool):
        self.policy, self.params, self.batched = policy, params, batched

    def __call__(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return policy_distribution(self.policy, self.params, obs, self.batched).sample(generator)


class LatentActor:
    """The sampler's act function of PEARL's policy conditioned on latent tasks ``z`` ``(tasks, episodes, latent)``:
    a small picklable object (policy, action scaler, ``z``), so remote samplers can run it."""

    def __init__(self, policy: TanhGaussianPolicy, scaler: ActionScaler, z: torch.Tensor, deterministic: bool,
                 uniform: bool = False):
        self.policy, self.scaler, self.z, self.deterministic = policy, scaler, z, deterministic
        #: act uniformly at random in the action box instead (PEARL's ``--prior-actions uniform``)
        self.uniform = uniform

    def __call__(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.uniform:
            unit = torch.rand((*self.z.shape[:-1], self.scaler.dim), generator=generator) * 2.0 - 1.0
            return self.scaler.to_env(unit)
        x = torch.cat([obs.flatten(2), self.z], dim=-1)
        return self.scaler.to_env(self.policy(x, generator, deterministic=self.deterministic).actions)
