"""The trained PEARL policy a user holds (``metarl.load`` / ``metarl.load_policy``): adapt to an env's task by
inferring the posterior over the task variable from the episodes' transitions, then act."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.policy import AdaptedPolicy, MetaPolicy, records_to_episodes
from metarl.replay import episode_transitions

__all__ = ["PEARLPolicy"]


class _PEARLAdapted(AdaptedPolicy):
    """Acts with ``z`` drawn from the posterior at each :meth:`reset` (the prior before any context)."""

    def __init__(self, policy: MetaPolicy, generator: torch.Generator, posterior: torch.distributions.Normal,
                 uniform: bool = False):
        super().__init__(policy, generator)
        self.posterior, self.uniform = posterior, uniform  # uniform: random actions (--prior-actions uniform)
        self.reset()

    def reset(self) -> None:
        self.z = self.policy.algorithm._sample_z(self.posterior, self.generator)  # type: ignore[attr-defined]

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        algo: Any = self.policy.algorithm
        x = torch.as_tensor(self.observation(obs), dtype=torch.float32).reshape(1, 1, -1)
        with torch.no_grad():
            action = algo.act_fn(self.z.reshape(1, 1, -1), deterministic=not sample, uniform=self.uniform)(
                x, self.generator)
        return action[0, 0].numpy()


class PEARLPolicy(MetaPolicy):
    """PEARL: ``adapt`` infers the posterior over the task variable from the episodes' transitions."""

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator
               ) -> AdaptedPolicy:
        algo: Any = self.algorithm
        actor = _PEARLAdapted(self, generator, algo.encoder.prior((1,)), uniform=algo.cfg.prior_actions == "uniform")
        context = torch.zeros((1, 0, algo.encoder.input_dim))
        exploring = algo.cfg.metatest_prior_episodes  # episodes with z from the prior (each episode draws a z)
        for e in range(episodes):
            sample = e < exploring and algo.cfg.metatest_sample_prior  # as the meta-test acts
            records = self.collect(env, actor, seeds[e:e + 1], sample=sample)
            tr = episode_transitions(records_to_episodes(records), algo.scaler)
            context = torch.cat([context, algo.context_of({k: v[:, 0] for k, v in tr.items()})], dim=1)
            if e + 1 >= exploring:
                with torch.no_grad():
                    actor = _PEARLAdapted(self, generator, algo.infer_posterior(context))
        return actor
