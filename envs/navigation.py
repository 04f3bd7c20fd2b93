"""2-D point navigation (the MAML paper's point task, rllab's ``PointEnvRandGoal``).

The agent starts at the origin and moves by its action (clipped to ``[-max_action,
max_action]^2``); the reward is minus the Euclidean distance to the task's goal, drawn uniform in
``[goal_low, goal_high]^2``. The episode terminates when the agent is within ``goal_tolerance``
of the goal on both axes (as in the original code) and is truncated at the horizon (100,
Gymnasium's ``max_episode_steps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from metarl.batched import BatchedEnv, StepResult
from metarl.tasks import Task, TaskFamily, TaskParam, check_positive_int

__all__ = ["Navigation2DEnv", "Navigation2DBatched", "PointMassEnv", "PointMassBatched"]


def _check_range(name: str, low: float, high: float) -> None:
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{name} range must be finite with low < high, got [{low}, {high}]")


class PointMassEnv(TaskFamily, gym.Env):
    """A point in the plane that starts at the origin and moves by its action, clipped to ``max_action`` per axis.

    Subclasses set ``max_action``, the spaces and the task protocol, and compute rewards from :meth:`_move`.
    """

    max_action: float
    _position: np.ndarray

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._position = np.zeros(2)
        return self._position.astype(np.float32), {}

    def _move(self, action: Any) -> np.ndarray:
        """Check ``action``, move by it (clipped) and return the new position."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"{self.family_name} actions have shape (2,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.family_name} action must be finite, got {action.tolist()}")
        self._position = self._position + np.clip(action, -self.max_action, self.max_action)
        return self._position


class Navigation2DEnv(PointMassEnv):
    """Point navigation to a goal in the plane.

    Args:
        goal_low: lower bound of each goal coordinate.
        goal_high: upper bound of each goal coordinate.
        max_action: actions are clipped to ``[-max_action, max_action]`` per axis.
        goal_tolerance: the episode terminates when ``|position - goal| < goal_tolerance`` on
            both axes; 0 disables termination.
    """

    family_name = "Navigation2D"
    metadata = {"render_modes": []}

    def __init__(self, goal_low: float = -0.5, goal_high: float = 0.5, max_action: float = 0.1,
                 goal_tolerance: float = 0.01):
        _check_range("goal", goal_low, goal_high)
        if not max_action > 0:
            raise ValueError(f"max_action must be positive, got {max_action}")
        if not goal_tolerance >= 0:
            raise ValueError(f"goal_tolerance must be >= 0, got {goal_tolerance}")
        self.goal_low, self.goal_high = float(goal_low), float(goal_high)
        self.max_action, self.goal_tolerance = float(max_action), float(goal_tolerance)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-self.max_action, self.max_action, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self.set_task(Task.create(self.family_name, goal=np.full(2, (self.goal_low + self.goal_high) / 2)))

    def task_space(self) -> dict[str, TaskParam]:
        return {"goal": TaskParam(self.goal_low, self.goal_high, shape=(2,))}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        goals = rng.uniform(self.goal_low, self.goal_high, size=(n, 2))
        return [Task.create(self.family_name, goal=g) for g in goals]

    def goal_of(self, task: Task) -> np.ndarray:
        """The goal position of ``task``."""
        return np.asarray(task["goal"], dtype=np.float64)

    def _apply_task(self, task: Task) -> None:
        self._goal = self.goal_of(task)

    def step(self, action):
        self._move(action)
        delta = self._position - self._goal
        reward = -float(np.sqrt(np.sum(delta**2)))
        terminated = bool(np.all(np.abs(delta) < self.goal_tolerance))
        return self._position.astype(np.float32), reward, terminated, False, {"goal": self._goal.copy()}

    def batched(self, tasks: Sequence[Task], episodes_per_task: int) -> "Navigation2DBatched":
        """The NumPy fast path for the sampler (same transitions as this env)."""
        return Navigation2DBatched(self, tasks, episodes_per_task)


class PointMassBatched(BatchedEnv):
    """All (task, episode) simulations of a point moving in the plane towards its task's goal, in one array.

    The env gives ``goal_of(task)`` and ``max_action``; a subclass turns the new positions and their
    distances to the goals into ``(reward, terminated, info)`` (:meth:`outcome`).
    """

    def __init__(self, env: Any, tasks: Sequence[Task], episodes_per_task: int):
        self._env = env
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.tasks = list(tasks)
        self.set_tasks(tasks)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        self.tasks = [self._env.validate_task(t) for t in tasks]
        goals = np.stack([self._env.goal_of(t) for t in self.tasks])
        self._goals = goals[self.task_index()]
        self._position = np.zeros((self.num_envs, 2))

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        self._position = np.zeros((self.num_envs, 2))
        return self._position.astype(np.float32)

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        self._position[np.asarray(indices, dtype=np.int64)] = 0.0
        return self._position.astype(np.float32)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"actions must have shape {(self.num_envs, 2)}, got {actions.shape}")
        self._position = self._position + np.clip(actions, -self._env.max_action, self._env.max_action)
        delta = self._position - self._goals
        reward, terminated, info = self.outcome(delta)
        return self._position.astype(np.float32), reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def outcome(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Rewards, terminations and info arrays from the positions minus the goals ``(num_envs, 2)``."""
        raise NotImplementedError


class Navigation2DBatched(PointMassBatched):
    """All (task, episode) simulations of Navigation2D in one array."""

    def outcome(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        reward = -np.sqrt(np.sum(delta**2, axis=1))
        return reward, np.all(np.abs(delta) < self._env.goal_tolerance, axis=1), {}
