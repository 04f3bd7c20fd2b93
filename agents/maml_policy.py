"""The trained MAML policy a user holds (``metarl.load`` / ``metarl.load_policy``, MAML-TRPO and MAML-PPO runs):
adapt to an env's task with the run's inner step(s) on collected episodes, then act."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.adaptation import Params, detach_params, inner_loop
from metarl.policy import AdaptedPolicy, MetaPolicy, records_to_episodes

__all__ = ["MAMLPolicy"]


class _MAMLAdapted(AdaptedPolicy):
    def __init__(self, policy: MetaPolicy, generator: torch.Generator, params: dict[str, torch.Tensor],
                 batched: bool):
        super().__init__(policy, generator)
        self.params, self.batched = params, batched

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        algo = self.policy.algorithm
        x = torch.as_tensor(self.observation(obs), dtype=torch.float32)[None]
        with torch.no_grad():
            dist = algo._dist(self.params, x[None] if self.batched else x, self.batched)  # type: ignore[attr-defined]
            action = dist.sample(self.generator) if sample else dist.mode()
        action = action.reshape(-1, *action.shape[(2 if self.batched else 1):])[0]
        return action.numpy() if action.is_floating_point() else action.numpy().astype(np.int64)[()]


class MAMLPolicy(MetaPolicy):
    """MAML-TRPO / MAML-PPO: ``adapt`` takes the run's inner step(s) on the collected episodes."""

    def __init__(self, algorithm: Any):
        super().__init__(algorithm)
        self.default_episodes = int(algorithm.cfg.episodes_per_task)  # type: ignore[attr-defined]

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator,
               steps: int | None = None) -> AdaptedPolicy:
        """``steps`` inner steps (default: the run's ``inner_steps``), each on ``episodes`` fresh episodes."""
        algo: Any = self.algorithm
        steps = algo.cfg.inner_steps if steps is None else steps
        meta = detach_params(algo.meta_params())
        if episodes == 0:
            return _MAMLAdapted(self, generator, meta, batched=False)

        def support(step: int, params: Params) -> dict[str, torch.Tensor]:
            """Fresh episodes on the env of the policy adapted ``step`` steps."""
            actor = _MAMLAdapted(self, generator, params, batched=step > 0)
            records = self.collect(env, actor, seeds if step == 0 else [None] * episodes, sample=True)
            with torch.enable_grad():  # a value baseline is fitted here
                return algo.task_batch(records_to_episodes(records))

        with torch.no_grad():
            states = inner_loop(algo.inner_loss, meta, support, steps=steps, first_order=True, task_axis=True,
                                step_size=lambda step: algo.step_size(meta, step))
        return _MAMLAdapted(self, generator, states[-1], batched=True) if states else \
            _MAMLAdapted(self, generator, meta, batched=False)
