"""PEARL's point robots (Rakelly et al. 2019; katerakelly/oyster ``rlkit/envs/point_robot.py``).

``metarl/PointRobot-v0`` (:class:`PointRobotEnv`) is the public code's dense point robot: every episode
starts at a point drawn uniformly from ``[-1, 1]^2`` (from the episode's reset seed), the goal is drawn
uniformly from ``[-1, 1]^2``, the action moves the point (clipped to ``[-0.1, 0.1]^2``), the reward is
minus the distance to the goal, episodes never terminate and last 20 steps. The random start is what
makes its context informative: transitions from anywhere in the square place the goal, where paths
from the origin (Navigation2D) all lie on one ray. Differences from the public code, on purpose: goals
are drawn by ``sample_tasks`` from the run's seed (the public code draws 100 with ``np.random.seed(1337)``
and splits them 80 training / 20 test; metarl's PEARL fixes ``train_tasks`` training goals from the seed
and meta-tests on goals drawn from ``metatest_seed``), and starts come from the episode's reset seed
(the public code uses the global ``np.random``).

``metarl/SparsePointRobot-v0`` (:class:`SparsePointRobotEnv`) is the sparse variant:

A point starts at the origin of the plane and moves by its action, clipped to ``[-0.1, 0.1]^2``. The
goal lies on the upper half of the circle of radius ``radius`` (1): a task is the goal's angle in
``[0, pi]``. The reward is sparse: ``1 - d`` when the distance ``d`` to the goal is within
``goal_radius`` (0.2), else 0. Episodes never terminate; the horizon is 20 steps (registered
``max_episode_steps``), so the goal region is reached after at least 8 steps straight at it. An episode
*succeeds* when it enters the goal region (:meth:`SparsePointRobotEnv.episode_success`).

Every step's ``info["dense_reward"]`` is ``-d``, the dense reward of PEARL's point robot. PEARL's
public code trains its critic on that dense reward and gives only the sparse one to the task encoder
and to the evaluation; metarl's PEARL can do the same (``--critic-reward dense``), while any other
algorithm sees only the sparse reward.

Differences from the public code, on purpose: the goal angle is drawn uniformly from ``[0, pi]`` by the
family's ``sample_tasks`` (the public code fixes 100 evenly spaced angles, shuffled with seed 1337, and
splits them 80/20 into training and test goals), and actions are clipped (the public code relies on
its tanh policy's range).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from gymnasium.utils import seeding

from metarl.envs.navigation import Navigation2DEnv, PointMassBatched, PointMassEnv
from metarl.tasks import Task, TaskParam

__all__ = ["PointRobotEnv", "PointRobotBatched", "SparsePointRobotEnv", "SparsePointRobotBatched", "sparse_reward",
           "start_position"]


def start_position(rng: np.random.Generator, start_range: float) -> np.ndarray:
    """A start drawn uniformly from ``[-start_range, start_range]^2`` (the one draw of the env's ``reset`` and of
    the batched backend, which builds ``rng`` from the reset seed as ``env.reset(seed=seed)`` does)."""
    return rng.uniform(-start_range, start_range, size=2)


class PointRobotEnv(Navigation2DEnv):
    """PEARL's dense point robot: random starts and goals in the square, reward minus the distance.

    Args:
        goal_low, goal_high: each goal coordinate is drawn from ``U[goal_low, goal_high]``.
        start_range: each start coordinate is drawn from ``U[-start_range, start_range]`` (0: the origin).
        max_action: actions are clipped to ``[-max_action, max_action]`` per axis.
    """

    family_name = "PointRobot"
    kwarg_bounds = {"start_range": "[0, 100]", "max_action": "(0, 100]"}

    def __init__(self, goal_low: float = -1.0, goal_high: float = 1.0, start_range: float = 1.0,
                 max_action: float = 0.1):
        super().__init__(goal_low=goal_low, goal_high=goal_high, max_action=max_action, goal_tolerance=0.0)
        self.start_range = float(start_range)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed, options=options)
        self._position = start_position(self.np_random, self.start_range)
        return self._position.astype(np.float32), {}

    def step(self, action):
        observation, reward, _, truncated, info = super().step(action)
        return observation, reward, False, truncated, info  # no termination: the public code's episodes run 20 steps

    def batched(self, tasks: Sequence[Task], episodes_per_task: int) -> "PointRobotBatched":
        """The NumPy fast path for the sampler (same transitions as this env for the same reset seeds)."""
        return PointRobotBatched(self, tasks, episodes_per_task)


class PointRobotBatched(PointMassBatched):
    """All (task, episode) simulations of PointRobot in one array; simulation ``i`` starts where
    ``env.reset(seed=seeds[i])`` starts."""

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds (one per simulation), got shape {seeds.shape}")
        self._position = np.zeros((self.num_envs, 2))
        return self.reset_some(np.arange(self.num_envs), seeds)

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        for i, seed in zip(np.asarray(indices, dtype=np.int64).tolist(), np.asarray(seeds).tolist()):
            self._position[i] = start_position(seeding.np_random(int(seed))[0], self._env.start_range)
        return self._position.astype(np.float32)

    def outcome(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        return -np.sqrt(np.sum(delta**2, axis=1)), np.zeros(len(delta), dtype=bool), {}


def sparse_reward(distance: np.ndarray, goal_radius: float) -> np.ndarray:
    """``1 - distance`` within ``goal_radius`` of the goal, 0 outside (PEARL's sparsified reward made positive)."""
    distance = np.asarray(distance, dtype=np.float64)
    return np.where(distance <= goal_radius, 1.0 - distance, 0.0)


class SparsePointRobotEnv(PointMassEnv):
    """Point navigation to a goal on a half circle, rewarded only near the goal.

    Args:
        radius: distance of the goals from the origin.
        goal_radius: the reward is non-zero within this distance of the goal.
        max_action: actions are clipped to ``[-max_action, max_action]`` per axis.
    """

    family_name = "SparsePointRobot"
    metadata = {"render_modes": []}

    def __init__(self, radius: float = 1.0, goal_radius: float = 0.2, max_action: float = 0.1):
        for name, value in (("radius", radius), ("goal_radius", goal_radius), ("max_action", max_action)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (np.isfinite(value) and value > 0):
                raise ValueError(f"SparsePointRobot: {name} must be a positive number, got {value!r}")
        self.radius, self.goal_radius, self.max_action = float(radius), float(goal_radius), float(max_action)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-self.max_action, self.max_action, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self.set_task(Task.create(self.family_name, angle=np.pi / 2))

    def task_space(self) -> dict[str, TaskParam]:
        return {"angle": TaskParam(0.0, float(np.pi))}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.create(self.family_name, angle=float(a)) for a in rng.uniform(0.0, np.pi, size=n)]

    def goal_of(self, task: Task) -> np.ndarray:
        """The goal position of ``task``."""
        angle = float(task["angle"])
        return self.radius * np.array([np.cos(angle), np.sin(angle)])

    def _apply_task(self, task: Task) -> None:
        self._goal = self.goal_of(task)

    @staticmethod
    def episode_success(rewards: np.ndarray) -> np.ndarray:
        """Whether each episode reached the goal region: rewards ``(..., T)`` -> ``(...)`` booleans.

        Meta-test reports use it for a success rate per episode of a trial (any family may define it).
        """
        return np.asarray(rewards).max(axis=-1) > 0

    def step(self, action):
        self._move(action)
        distance = float(np.linalg.norm(self._position - self._goal))
        reward = float(sparse_reward(distance, self.goal_radius))
        return self._position.astype(np.float32), reward, False, False, {"dense_reward": -distance,
                                                                          "goal": self._goal.copy()}

    def batched(self, tasks: Sequence[Task], episodes_per_task: int) -> "SparsePointRobotBatched":
        """The NumPy fast path for the sampler (same transitions as this env)."""
        return SparsePointRobotBatched(self, tasks, episodes_per_task)


class SparsePointRobotBatched(PointMassBatched):
    """All (task, episode) simulations of SparsePointRobot in one array."""

    def outcome(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        distance = np.linalg.norm(delta, axis=1)
        return sparse_reward(distance, self._env.goal_radius), np.zeros(len(delta), dtype=bool), \
            {"dense_reward": -distance}
