"""Random tabular MDPs (the RL^2 paper's tabular tasks, Duan et al. 2016, section 4.2).

A task is a finite MDP with ``num_states`` states and ``num_actions`` actions: each transition
distribution ``P[s, a, :]`` is drawn from a flat ``Dirichlet(1)`` and each mean reward
``R[s, a]`` from ``Normal(1, 1)`` (as in the paper and pytorch-maml-rl's ``TabularMDPEnv``).
Every episode starts in state 0 ("an episode always starts on the first state") and lasts 10
steps (``max_episode_steps=10``); with RL^2 a trial is several episodes of the same MDP.

The observed reward is ``R[s, a]`` plus unit Gaussian noise (``reward_noise_std=1``): the
paper's rewards are Gaussian with unit variance around the sampled means, as in
pytorch-maml-rl. Observations are the one-hot state as a float32 ``Box``.

Randomness: a step draws exactly three uniforms ``(u0, u1, u2)`` from ``np_random``; the
reward noise is the Box-Muller normal ``sqrt(-2 log(1 - u0)) cos(2 pi u1)`` and the next state
is the inverse-CDF draw ``#{s' : cumsum(P[s, a])[s'] <= u2}``. Drawing a fixed number of
uniforms per step is what lets the batched backend replay each simulation from
``numpy.random.default_rng(seed)`` and give the same transitions as the single env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl.batched import BatchedEnv, StepResult
from metarl.tasks import Task, TaskFamily, TaskParam, check_positive_int

__all__ = ["TabularMDPEnv", "TabularMDPBatched", "SIMPLEX_ATOL"]

SIMPLEX_ATOL = 1e-6
"""How far from 1 a transition row's sum may be before a task is rejected."""

_UNIFORMS_PER_STEP = 3


def _noise_and_next_state(uniforms: np.ndarray, cdf_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal reward noise and next states from ``uniforms[..., 3]`` and CDF rows ``[..., S]``.

    The single env and the batched backend both call this, so they compute bit-identical values.
    """
    noise = np.sqrt(-2.0 * np.log1p(-uniforms[..., 0])) * np.cos(2.0 * np.pi * uniforms[..., 1])
    # The last CDF entry can fall a rounding error short of 1; the clip keeps u2 in it.
    next_state = np.minimum((cdf_rows <= uniforms[..., 2:3]).sum(axis=-1), cdf_rows.shape[-1] - 1)
    return noise, next_state


class TabularMDPEnv(TaskFamily, gym.Env):
    """A random finite MDP with one-hot state observations.

    Args:
        num_states: number of states.
        num_actions: number of actions.
        reward_noise_std: standard deviation of the Gaussian noise added to the mean reward
            (1 in the RL^2 paper; 0 gives the mean rewards themselves).
    """

    family_name = "TabularMDP"
    metadata = {"render_modes": []}

    def __init__(self, num_states: int = 10, num_actions: int = 5, reward_noise_std: float = 1.0):
        self.num_states = check_positive_int("num_states", num_states)
        self.num_actions = check_positive_int("num_actions", num_actions)
        if not (np.isfinite(reward_noise_std) and reward_noise_std >= 0):
            raise ValueError(f"reward_noise_std must be finite and >= 0, got {reward_noise_std}")
        self.reward_noise_std = float(reward_noise_std)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_states,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_actions)
        self._eye = np.eye(self.num_states, dtype=np.float32)
        self._state = 0
        uniform_rows = np.full((self.num_states, self.num_actions, self.num_states), 1.0 / self.num_states)
        self.set_task(Task.create(self.family_name, transitions=uniform_rows,
                                  reward_means=np.ones((self.num_states, self.num_actions))))

    def task_space(self) -> dict[str, TaskParam]:
        s, a = self.num_states, self.num_actions
        return {
            "transitions": TaskParam(0.0, 1.0, shape=(s, a, s)),
            "reward_means": TaskParam(shape=(s, a)),
        }

    def validate_task(self, task: Any) -> Task:
        """Box checks of :class:`TaskFamily` plus: every ``transitions[s, a, :]`` sums to 1."""
        task = super().validate_task(task)
        sums = task["transitions"].sum(axis=-1)
        bad = np.argwhere(np.abs(sums - 1.0) > SIMPLEX_ATOL)
        if len(bad):
            s, a = bad[0]
            raise ValueError(
                f"{self.family_name} task transitions[{s}, {a}, :] sums to {sums[s, a]:.6g}, not 1 "
                f"({len(bad)} rows off by more than {SIMPLEX_ATOL}); every row must be a probability "
                "distribution over next states (normalise it, or sample tasks with env.unwrapped.sample_tasks)"
            )
        return task

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        s, a = self.num_states, self.num_actions
        transitions = rng.dirichlet(np.ones(s), size=(n, s, a))
        reward_means = rng.normal(1.0, 1.0, size=(n, s, a))
        return [Task.create(self.family_name, transitions=p, reward_means=r)
                for p, r in zip(transitions, reward_means)]

    def _apply_task(self, task: Task) -> None:
        self._cdf = np.cumsum(task["transitions"], axis=-1)
        self._reward_means = task["reward_means"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = 0
        return self._eye[self._state].copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.num_actions}), got {action!r}")
        a = int(action)
        uniforms = self.np_random.random(_UNIFORMS_PER_STEP)
        noise, next_state = _noise_and_next_state(uniforms[None], self._cdf[self._state, a][None])
        reward = float(self._reward_means[self._state, a] + self.reward_noise_std * noise[0])
        self._state = int(next_state[0])
        return self._eye[self._state].copy(), reward, False, False, {}

    def batched(self, tasks: Sequence[Task], episodes_per_task: int) -> "TabularMDPBatched":
        """The NumPy fast path for the sampler (same transitions as this env for the same seeds)."""
        return TabularMDPBatched(self, tasks, episodes_per_task)


class TabularMDPBatched(BatchedEnv):
    """All (task, episode) simulations of a tabular MDP family in one array.

    Each simulation keeps its own ``numpy.random.default_rng(seed)`` and draws its uniforms in
    blocks of ``block_steps`` steps (a block is the same stream as that many single-env steps).

    Args:
        env: the family env (supplies sizes, noise scale and task validation).
        tasks: one task per group of ``episodes_per_task`` simulations.
        episodes_per_task: simulations per task.
        block_steps: steps of uniforms drawn per simulation at a time.
    """

    def __init__(self, env: TabularMDPEnv, tasks: Sequence[Task], episodes_per_task: int,
                 block_steps: int = 16):
        self._env = env
        self.num_states, self.num_actions = env.num_states, env.num_actions
        self.reward_noise_std = env.reward_noise_std
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.block_steps = check_positive_int("block_steps", block_steps)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self._eye = np.eye(self.num_states, dtype=np.float32)
        self.tasks = list(tasks)
        self.set_tasks(tasks)
        self._rngs: list[np.random.Generator] = []
        self._uniforms = np.zeros((self.num_envs, 0, _UNIFORMS_PER_STEP))
        self._t = 0
        self._state = np.zeros(self.num_envs, dtype=np.int64)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != len(self.tasks):
            raise ValueError(f"this backend runs {len(self.tasks)} tasks, got {len(tasks)}")
        self.tasks = [self._env.validate_task(t) for t in tasks]
        self._cdf = np.cumsum(np.stack([t["transitions"] for t in self.tasks]), axis=-1)
        self._reward_means = np.stack([t["reward_means"] for t in self.tasks])
        self._sim_task = self.task_index()

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds, got shape {seeds.shape}")
        self._rngs = [np.random.default_rng(int(s)) for s in seeds]
        self._uniforms = np.zeros((self.num_envs, 0, _UNIFORMS_PER_STEP))
        self._t = 0
        self._state = np.zeros(self.num_envs, dtype=np.int64)
        return self._eye[self._state]

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers of shape {(self.num_envs,)}, "
                             f"got {actions.dtype} {actions.shape}")
        if np.any((actions < 0) | (actions >= self.num_actions)):
            raise ValueError(f"actions must be in [0, {self.num_actions}), got {actions.min()}..{actions.max()}")
        if not self._rngs:
            raise RuntimeError("call reset(seeds) before step")
        if self._t >= self._uniforms.shape[1]:
            block = np.stack([g.random((self.block_steps, _UNIFORMS_PER_STEP)) for g in self._rngs])
            self._uniforms = np.concatenate([self._uniforms[:, self._t:], block], axis=1)
            self._t = 0
        uniforms = self._uniforms[:, self._t]
        self._t += 1
        cdf_rows = self._cdf[self._sim_task, self._state, actions]
        noise, next_state = _noise_and_next_state(uniforms, cdf_rows)
        reward = self._reward_means[self._sim_task, self._state, actions] + self.reward_noise_std * noise
        self._state = next_state
        done = np.zeros(self.num_envs, dtype=bool)
        return self._eye[self._state], reward, done, done.copy(), {}
