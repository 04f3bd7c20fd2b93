"""Bernoulli multi-armed bandits (the RL^2 paper's bandit tasks, Duan et al. 2016, section 4.1).

A task is a vector of ``k`` arm means drawn i.i.d. ``U[0, 1]``. Each step pulls one arm ``a``
and pays 1 with probability ``means[a]``, else 0. An episode is ``n`` pulls; with RL^2 an episode
is the whole trial, so the policy has to explore and exploit within it.

The env truncates itself after ``n`` pulls (it is registered with ``max_episode_steps=None``), so
``gymnasium.make("metarl/BernoulliBandit-v0", k=10, n=100)`` gives 10 arms and 100 pulls; the
horizon is ``env.unwrapped.horizon``. The observation is a constant dummy (the recurrent policy
sees the previous action and reward through a wrapper).

Randomness: a step draws exactly one uniform ``u`` from ``np_random`` and pays ``u < means[a]``,
so the batched backend, which draws each simulation's uniforms from
``numpy.random.default_rng(seed)`` (what ``reset(seed=seed)`` seeds ``np_random`` with), gives
the same rewards as the single env for the same reset seeds and actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl.batched import BatchedEnv, StepResult
from metarl.tasks import Task, TaskFamily, TaskParam, check_positive_int

__all__ = ["BernoulliBanditEnv", "BernoulliBanditBatched"]


class BernoulliBanditEnv(TaskFamily, gym.Env):
    """``k``-armed Bernoulli bandit played for ``n`` pulls.

    Args:
        k: number of arms.
        n: pulls per episode; the episode is truncated after the ``n``-th pull.
    """

    family_name = "BernoulliBandit"
    metadata = {"render_modes": []}

    def __init__(self, k: int = 5, n: int = 10):
        self.k = check_positive_int("k", k)
        self.n = check_positive_int("n", n)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.k)
        self._pulls = 0
        self.set_task(Task.create(self.family_name, means=np.full(self.k, 0.5)))

    @property
    def horizon(self) -> int:
        """Pulls per episode (the env truncates itself; its spec has no ``max_episode_steps``)."""
        return self.n

    def task_space(self) -> dict[str, TaskParam]:
        return {"means": TaskParam(0.0, 1.0, shape=(self.k,))}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        means = rng.uniform(0.0, 1.0, size=(n, self.k))
        return [Task.create(self.family_name, means=m) for m in means]

    def _apply_task(self, task: Task) -> None:
        self._means = task["means"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pulls = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an arm index in [0, {self.k}), got {action!r}")
        if self._pulls >= self.n:
            raise RuntimeError(f"the episode ended after {self.n} pulls; call reset before stepping again")
        reward = float(self.np_random.random() < self._means[int(action)])
        self._pulls += 1
        truncated = self._pulls >= self.n
        return np.zeros(1, dtype=np.float32), reward, False, truncated, {}

    def batched(self, tasks: Sequence[Task], episodes_per_task: int) -> "BernoulliBanditBatched":
        """The NumPy fast path for the sampler (same rewards as this env for the same seeds)."""
        return BernoulliBanditBatched(self, tasks, episodes_per_task)


class BernoulliBanditBatched(BatchedEnv):
    """All (task, episode) simulations of a Bernoulli bandit family in one array.

    ``reset`` draws each simulation's ``n`` uniforms up front from
    ``numpy.random.default_rng(seed)``; a step compares the pulled arm's mean with the next one.
    Steps past the ``n``-th pull return zero reward and ``truncated=True``.
    """

    def __init__(self, env: BernoulliBanditEnv, tasks: Sequence[Task], episodes_per_task: int):
        self._env = env
        self.k, self.n = env.k, env.n
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.tasks = list(tasks)
        self.set_tasks(tasks)
        self._uniforms = np.ones((self.num_envs, self.n))
        self._pulls = 0

    @property
    def horizon(self) -> int:
        """Pulls per episode."""
        return self.n

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != len(self.tasks):
            raise ValueError(f"this backend runs {len(self.tasks)} tasks, got {len(tasks)}")
        self.tasks = [self._env.validate_task(t) for t in tasks]
        self._means = np.stack([t["means"] for t in self.tasks])[self.task_index()]

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds, got shape {seeds.shape}")
        self._uniforms = np.stack([np.random.default_rng(int(s)).random(self.n) for s in seeds])
        self._pulls = 0
        return np.zeros((self.num_envs, 1), dtype=np.float32)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integer arm indices of shape {(self.num_envs,)}, "
                             f"got {actions.dtype} {actions.shape}")
        if np.any((actions < 0) | (actions >= self.k)):
            raise ValueError(f"arm indices must be in [0, {self.k}), got {actions.min()}..{actions.max()}")
        rows = np.arange(self.num_envs)
        if self._pulls < self.n:
            reward = (self._uniforms[:, self._pulls] < self._means[rows, actions]).astype(np.float64)
        else:
            reward = np.zeros(self.num_envs)
        self._pulls += 1
        truncated = np.full(self.num_envs, self._pulls >= self.n)
        obs = np.zeros((self.num_envs, 1), dtype=np.float32)
        return obs, reward, np.zeros(self.num_envs, dtype=bool), truncated, {}
