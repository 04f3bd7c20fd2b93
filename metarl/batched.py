"""Batched simulation of many (task, episode) pairs, as the sampler consumes it.

A :class:`BatchedEnv` runs ``B = len(tasks) * episodes_per_task`` independent simulations;
simulation ``i`` runs ``tasks[i // episodes_per_task]``. It has no auto-reset: the sampler
resets all simulations together, steps them for at most the horizon and masks the steps after
each simulation's episode ended.

A task family gets the sampler's fast path by giving its unwrapped env a method
``batched(tasks, episodes_per_task) -> BatchedEnv`` that steps the whole batch with NumPy (or returns
``None`` for tasks its fast path does not cover). Any other family runs on :class:`GenericBatchedEnv`, one
Gymnasium env per simulation.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.tasks import check_positive_int, check_task_family

__all__ = ["BatchedEnv", "GenericBatchedEnv", "make_batched_env", "StepResult"]

StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


class BatchedEnv(abc.ABC):
    """Many simulations of one family stepped together.

    Attributes:
        tasks: the tasks, one per group of ``episodes_per_task`` simulations.
        episodes_per_task: simulations per task.
        num_envs: ``len(tasks) * episodes_per_task``.
        single_observation_space / single_action_space: spaces of one simulation.
    """

    tasks: list[Any]
    episodes_per_task: int
    single_observation_space: gym.Space
    single_action_space: gym.Space

    @property
    def num_envs(self) -> int:
        return len(self.tasks) * self.episodes_per_task

    def task_index(self) -> np.ndarray:
        """Index into ``tasks`` of each simulation."""
        return np.repeat(np.arange(len(self.tasks)), self.episodes_per_task)

    @abc.abstractmethod
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Run ``tasks`` (same count as before) from the next ``reset`` on; lets the sampler reuse a backend."""

    @abc.abstractmethod
    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Reset every simulation (simulation ``i`` as ``env.reset(seed=seeds[i])``); return obs ``(B, ...)``."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every simulation; return ``(obs, reward, terminated, truncated, info)`` batched on axis 0.

        Simulations whose episode already ended may be stepped further; their results are
        ignored by the sampler.
        """

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Reset only simulations ``indices`` (each as ``env.reset(seed=...)``), the others keep running; return
        every simulation's observation. Backends whose simulations always end together may leave it out."""
        raise NotImplementedError(f"{type(self).__name__} resets all its simulations together")

    def close(self) -> None:
        """Release resources."""


class GenericBatchedEnv(BatchedEnv):
    """Fallback for any registered family: one Gymnasium env per simulation, stepped in a loop.

    Simulations whose episode ended are not stepped again (their last observation is repeated),
    so an env never sees a ``step`` after termination. With ``env_pool`` (a list the caller owns) the
    envs come from it, made only where it is short: backends of one sampler, used one at a time, then
    share their envs instead of each holding its own (what keeps Meta-World's ~21 MB envs affordable).
    """

    def __init__(self, env_fn: Callable[[], gym.Env], tasks: Sequence[Any], episodes_per_task: int,
                 env_pool: list[gym.Env] | None = None):
        self.tasks = list(tasks)
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self._pooled = env_pool is not None
        if env_pool is None:
            self.envs = [env_fn() for _ in range(self.num_envs)]
        else:
            env_pool.extend(env_fn() for _ in range(self.num_envs - len(env_pool)))
            self.envs = env_pool[:self.num_envs]
        self.set_tasks(tasks)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self._done = np.zeros(self.num_envs, dtype=bool)
        self._last_obs: list[Any] = []

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != len(self.tasks):
            raise ValueError(f"this backend runs {len(self.tasks)} tasks, got {len(tasks)}")
        self.tasks = list(tasks)
        for env, k in zip(self.envs, self.task_index()):
            check_task_family(env).set_task(self.tasks[k])

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds, got shape {seeds.shape}")
        self._last_obs = [env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)]
        self._done[:] = False
        return np.stack(self._last_obs)

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        for i, s in zip(np.asarray(indices).tolist(), np.asarray(seeds).tolist()):
            self._last_obs[i] = self.envs[i].reset(seed=int(s))[0]
            self._done[i] = False
        return np.stack(self._last_obs)

    def step(self, actions: np.ndarray) -> StepResult:
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        scalars: dict[str, np.ndarray] = {}
        for i, env in enumerate(self.envs):
            if self._done[i]:
                terminated[i] = True
                continue
            obs, r, term, trunc, info = env.step(actions[i])
            self._last_obs[i] = obs
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self._done[i] = term or trunc
            for key, value in info.items():  # numeric scalars batch like the fast paths' info
                if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                    scalars.setdefault(key, np.zeros(self.num_envs))[i] = value
        return np.stack(self._last_obs), rewards, terminated, truncated, scalars

    def close(self) -> None:
        if not self._pooled:  # pooled envs belong to the pool's owner
            for env in self.envs:
                env.close()


def make_batched_env(
    env_fn: Callable[[], gym.Env], tasks: Sequence[Any], episodes_per_task: int, *, fast: bool = True,
    env_pool: list[gym.Env] | None = None,
) -> BatchedEnv:
    """The family's own batched backend when it has one (and ``fast``), else :class:`GenericBatchedEnv` (its envs
    from ``env_pool`` when given)."""
    if fast:
        probe = env_fn()
        base = check_task_family(probe)
        batched = getattr(base, "batched", None)
        out = batched(list(tasks), episodes_per_task) if callable(batched) else None
        probe.close()
        if out is not None:
            return out
    return GenericBatchedEnv(env_fn, tasks, episodes_per_task, env_pool=env_pool)
