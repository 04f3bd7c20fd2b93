"""The MAML-RL Ant task families (AntVel, AntDir, AntGoal) on Gymnasium's Ant v5."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from metarl.envs.locomotion import _check_range, _DirectionTasks, _MujocoFamily, _reject_kwargs, _TargetVelocityTasks
from metarl.envs.mujoco_batched import SimBatch
from metarl.tasks import Task, TaskParam

__all__ = ["AntVelEnv", "AntDirEnv", "AntGoalEnv"]


class _AntFamily(_MujocoFamily, AntEnv):
    """Ant v5 with a task-dependent reward and MAML-RL's costs.

    ``reward = task_reward - ctrl_cost - contact_cost + healthy_reward``, where unlike v5 the
    ``healthy_reward`` (0.05, MAML's ``survive_reward``) is paid on every step, the terminal one
    included. Terminates as v5 (torso height outside ``healthy_z_range`` or a non-finite state).
    """

    _reset_qvel_noise = "normal"
    _needs_contact_forces = True
    _tracks_main_body = True
    _own_kwargs: ClassVar[tuple[str, ...]] = ()  # the family's own constructor kwargs (not AntEnv's)

    def _init_ant(self, init_kwargs: dict[str, Any], default_task: Task) -> None:
        kwargs = dict(init_kwargs)
        for name in self._own_kwargs:
            kwargs.pop(name)
        _reject_kwargs(self.family_name, kwargs, ["forward_reward_weight"],
                       "the task reward replaces v5's forward reward")
        self._init_v5(AntEnv, **kwargs)
        self._finish_init(init_kwargs, default_task)

    _task_reward_name: ClassVar[str] = "reward_forward"

    def _task_reward(self, x_velocity: np.ndarray, sims: SimBatch, task: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _reward_terms(self, x_velocity, sims, actions, task):
        low, high = self._contact_force_range
        forces = np.clip(sims.cfrc_ext, low, high).reshape(len(sims.cfrc_ext), -1)
        return {self._task_reward_name: self._task_reward(x_velocity, sims, task),
                "reward_ctrl": -self._ctrl_cost_weight * np.sum(np.square(actions), axis=-1),
                "reward_contact": -self._contact_cost_weight * np.sum(np.square(forces), axis=-1),
                "reward_survive": np.full(len(sims.qpos), self._healthy_reward)}

    def _batched_observation(self, sims: SimBatch) -> np.ndarray:
        skip = self.observation_structure["skipped_qpos"]
        parts = [sims.qpos[:, skip:], sims.qvel]
        if self._include_cfrc_ext_in_observation:
            low, high = self._contact_force_range
            parts.append(np.clip(sims.cfrc_ext[:, 1:], low, high).reshape(len(sims.qpos), -1))
        return np.concatenate(parts, axis=1)

    def _batched_x_velocity(self, before: SimBatch, after: SimBatch) -> np.ndarray:
        return (after.main_body_xy[:, 0] - before.main_body_xy[:, 0]) / self.dt

    def _batched_terminated(self, sims: SimBatch) -> np.ndarray:
        min_z, max_z = self._healthy_z_range
        finite = np.all(np.isfinite(sims.qpos), axis=1) & np.all(np.isfinite(sims.qvel), axis=1)
        healthy = finite & (min_z <= sims.qpos[:, 2]) & (sims.qpos[:, 2] <= max_z)
        return ~healthy & bool(self._terminate_when_unhealthy)


_ANT_DEFAULTS = dict(ctrl_cost_weight=0.005, contact_cost_weight=5e-4, healthy_reward=0.05)


class AntVelEnv(_TargetVelocityTasks, _AntFamily):
    """Ant running forward at a target velocity (MAML's AntEnvRand).

    Reward: ``-|v - velocity| + 1 - 0.005 |a|^2 - 0.0005 |clip(cfrc_ext, -1, 1)|^2 + 0.05``.

    Args:
        velocity_low: lower bound of the target velocity (tasks ~ U[velocity_low, velocity_high]).
        velocity_high: upper bound of the target velocity.
        ctrl_cost_weight: weight of ``|a|^2``.
        contact_cost_weight: weight of the clipped contact forces' ``|.|^2``.
        healthy_reward: paid every step (MAML's survive reward).
        **kwargs: Ant v5 arguments (``healthy_z_range``, ``terminate_when_unhealthy``,
            ``reset_noise_scale``, ``include_cfrc_ext_in_observation``, ...).
    """

    family_name = "AntVel"
    _reward_params = ("velocity",)
    _own_kwargs = ("velocity_low", "velocity_high")

    def __init__(self, velocity_low: float = 0.0, velocity_high: float = 3.0, **kwargs: Any):
        self.velocity_low, self.velocity_high = _check_range("velocity", velocity_low, velocity_high)
        self._init_ant(dict(_ANT_DEFAULTS, velocity_low=velocity_low, velocity_high=velocity_high, **kwargs),
                       Task.create(self.family_name, velocity=(self.velocity_low + self.velocity_high) / 2))

    def _task_reward(self, x_velocity, sims, task):
        return -np.abs(x_velocity - task["velocity"]) + 1.0


class AntDirEnv(_DirectionTasks, _AntFamily):
    """Ant running forward (+1) or backward (-1) along x (MAML's AntEnvRandDirec).

    Reward: ``direction * v - 0.005 |a|^2 - 0.0005 |clip(cfrc_ext, -1, 1)|^2 + 0.05``.

    Args:
        ctrl_cost_weight, contact_cost_weight, healthy_reward: as :class:`AntVelEnv`.
        **kwargs: Ant v5 arguments.
    """

    family_name = "AntDir"
    _reward_params = ("direction",)

    def __init__(self, **kwargs: Any):
        self._init_ant(dict(_ANT_DEFAULTS, **kwargs), Task.create(self.family_name, direction=1.0))

    def _task_reward(self, x_velocity, sims, task):
        return task["direction"] * x_velocity


class AntGoalEnv(_AntFamily):
    """Ant walking to a goal position in the plane (MAML's AntEnvRandGoal).

    Reward: ``-|xy - goal|_1 + 4 - 0.005 |a|^2 - 0.0005 |clip(cfrc_ext, -1, 1)|^2 + 0.05``, where
    ``xy`` is the torso's position (``qpos[0:2]``) after the step. The observation includes ``xy``
    (``exclude_current_positions_from_observation=False``): the agent has to know where it is.

    Args:
        goal_low: lower bound of each goal coordinate (tasks ~ U[goal_low, goal_high]^2).
        goal_high: upper bound of each goal coordinate.
        ctrl_cost_weight, contact_cost_weight, healthy_reward: as :class:`AntVelEnv`.
        **kwargs: Ant v5 arguments.
    """

    family_name = "AntGoal"
    _reward_params = ("goal",)
    _own_kwargs = ("goal_low", "goal_high")

    def __init__(self, goal_low: float = -3.0, goal_high: float = 3.0, **kwargs: Any):
        self.goal_low, self.goal_high = _check_range("goal", goal_low, goal_high)
        kwargs.setdefault("exclude_current_positions_from_observation", False)
        self._init_ant(dict(_ANT_DEFAULTS, goal_low=goal_low, goal_high=goal_high, **kwargs),
                       Task.create(self.family_name, goal=np.full(2, (self.goal_low + self.goal_high) / 2)))

    def task_space(self) -> dict[str, TaskParam]:
        return {"goal": TaskParam(self.goal_low, self.goal_high, shape=(2,))}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.create(self.family_name, goal=g)
                for g in rng.uniform(self.goal_low, self.goal_high, size=(n, 2))]

    def _apply_task(self, task: Task) -> None:
        self._goal = task["goal"]

    _task_reward_name = "reward_goal"

    def _task_reward(self, x_velocity, sims, task):
        return -np.sum(np.abs(sims.qpos[:, :2] - task["goal"]), axis=1) + 4.0
