"""PEARL's sparse point robot (Rakelly et al. 2019; katerakelly/oyster ``rlkit/envs/point_robot.py``).

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

import numpy as np
from gymnasium import spaces

from metarl.envs.navigation import PointMassBatched, PointMassEnv
from metarl.tasks import Task, TaskParam

__all__ = ["SparsePointRobotEnv", "SparsePointRobotBatched", "sparse_reward"]


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
