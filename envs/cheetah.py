"""The MAML-RL HalfCheetah task families (HalfCheetahVel, HalfCheetahDir) on Gymnasium's HalfCheetah v5."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.spaces import Box

from metarl.envs.locomotion import _check_range, _DirectionTasks, _MujocoFamily, _reject_kwargs, _TargetVelocityTasks
from metarl.envs.mujoco_batched import SimBatch, reset_perturbation
from metarl.tasks import Task

__all__ = ["HalfCheetahVelEnv", "HalfCheetahDirEnv"]


class _HalfCheetahFamily(_MujocoFamily, HalfCheetahEnv):
    """HalfCheetah v5 with a task-dependent reward; never terminates.

    Two options reproduce the original MAML-RL (rllab) cheetah where v5 differs, for experiments
    against the original numbers; the registered families keep v5's:
    ``include_center_of_mass_in_observation`` appends the robot's center of mass (x, y, z; rllab's
    ``get_body_com("torso")``, MuJoCo's ``subtree_com`` of the torso) to v5's 17-d observation,
    giving rllab's 20-d one; ``reset_noise="maml-rl"`` perturbs the initial qpos with
    ``0.01 N(0, 1)`` and qvel with ``0.1 N(0, 1)`` (rllab's ``reset_mujoco``) instead of v5's
    ``U[-0.1, 0.1]`` and ``0.1 N(0, 1)``.
    """

    _reset_qvel_noise = "normal"
    _RESET_NOISES = ("v5", "maml-rl")

    def _init_cheetah(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check and apply the cheetah options; return the v5 arguments left in ``kwargs``."""
        kwargs = dict(kwargs)
        com = kwargs.pop("include_center_of_mass_in_observation", False)
        noise = kwargs.pop("reset_noise", "v5")
        if not isinstance(com, (bool, np.bool_)):
            raise TypeError(f"{self.family_name}: include_center_of_mass_in_observation must be True or False, "
                            f"got {com!r}")
        if noise not in self._RESET_NOISES:
            raise ValueError(f"{self.family_name}: reset_noise must be one of {self._RESET_NOISES}, got {noise!r}")
        if noise == "maml-rl" and "reset_noise_scale" in kwargs:
            raise ValueError(f"{self.family_name}: reset_noise='maml-rl' fixes the scales (0.01 for qpos, 0.1 for "
                             "qvel); drop reset_noise_scale or use reset_noise='v5'")
        if com and kwargs.get("exclude_current_positions_from_observation", True) is False:
            raise ValueError(f"{self.family_name}: include_center_of_mass_in_observation builds rllab's observation, "
                             "which excludes the root's x; drop exclude_current_positions_from_observation=False")
        self._observes_center_of_mass = bool(com)
        self._maml_rl_reset = noise == "maml-rl"
        return kwargs

    def _finish_cheetah(self) -> None:
        if self._observes_center_of_mass:
            size = self.observation_space.shape[0] + 3
            self.observation_space = Box(low=-np.inf, high=np.inf, shape=(size,), dtype=np.float64)
            self.observation_structure = {**self.observation_structure, "center_of_mass": 3}

    def _get_obs(self):
        observation = super()._get_obs()
        if self._observes_center_of_mass:
            observation = np.concatenate([observation, self.data.subtree_com[1]])
        return observation

    def _reset_noise(self) -> tuple[tuple[str, float], tuple[str, float]]:
        if self._maml_rl_reset:
            return ("normal", 0.01), ("normal", 0.1)
        return super()._reset_noise()

    def reset_model(self):
        if not self._maml_rl_reset:
            return super().reset_model()
        (qpos_kind, qpos_scale), (qvel_kind, qvel_scale) = self._reset_noise()
        qpos = self.init_qpos + reset_perturbation(self.np_random, qpos_kind, qpos_scale, self.model.nq)
        qvel = self.init_qvel + reset_perturbation(self.np_random, qvel_kind, qvel_scale, self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _ctrl_cost(self, action: np.ndarray) -> np.ndarray:
        # The original MAML-RL cheetahs charge the action clipped to the action bounds.
        clipped = np.clip(action, self.action_space.low, self.action_space.high)
        return self._ctrl_cost_weight * np.sum(np.square(clipped), axis=-1)

    def _forward_reward(self, x_velocity: np.ndarray, task: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _reward_terms(self, x_velocity, sims, actions, task):
        return {"reward_forward": self._forward_reward(x_velocity, task), "reward_ctrl": -self._ctrl_cost(actions)}

    def _batched_observation(self, sims: SimBatch) -> np.ndarray:
        skip = self.observation_structure["skipped_qpos"]
        parts = [sims.qpos[:, skip:], sims.qvel]
        if self._observes_center_of_mass:
            parts.append(sims.center_of_mass)
        return np.concatenate(parts, axis=1)

    def _batched_x_velocity(self, before: SimBatch, after: SimBatch) -> np.ndarray:
        return (after.qpos[:, 0] - before.qpos[:, 0]) / self.dt

    def _batched_terminated(self, sims: SimBatch) -> np.ndarray:
        return np.zeros(len(sims.qpos), dtype=bool)


class HalfCheetahVelEnv(_TargetVelocityTasks, _HalfCheetahFamily):
    """HalfCheetah running at a target forward velocity (MAML's HalfCheetahEnvRand).

    Reward: ``-|v - velocity| - ctrl_cost_weight * |clip(a, -1, 1)|^2``; ``v`` is the torso's
    forward velocity over the step.

    Args:
        velocity_low: lower bound of the target velocity (tasks ~ U[velocity_low, velocity_high]).
        velocity_high: upper bound of the target velocity (2 in MAML, 3 in some later papers).
        ctrl_cost_weight: weight of the control cost.
        **kwargs: ``include_center_of_mass_in_observation`` and ``reset_noise`` (the original's
            observation and reset; see ``_HalfCheetahFamily``), and
            HalfCheetah v5 arguments (``frame_skip``, ``reset_noise_scale``, ``xml_file``,
            ``exclude_current_positions_from_observation``, ``render_mode``, ...).
    """

    family_name = "HalfCheetahVel"
    _reward_params = ("velocity",)

    def __init__(self, velocity_low: float = 0.0, velocity_high: float = 2.0, ctrl_cost_weight: float = 0.05,
                 **kwargs: Any):
        _reject_kwargs(self.family_name, kwargs, ["forward_reward_weight"], "the reward is -|v - target|")
        self.velocity_low, self.velocity_high = _check_range("velocity", velocity_low, velocity_high)
        self._init_v5(HalfCheetahEnv, ctrl_cost_weight=ctrl_cost_weight, **self._init_cheetah(kwargs))
        self._finish_cheetah()
        self._finish_init(dict(velocity_low=velocity_low, velocity_high=velocity_high,
                               ctrl_cost_weight=ctrl_cost_weight, **kwargs),
                          Task.create(self.family_name, velocity=(self.velocity_low + self.velocity_high) / 2))

    def _forward_reward(self, x_velocity, task):
        return -np.abs(x_velocity - task["velocity"])


class HalfCheetahDirEnv(_DirectionTasks, _HalfCheetahFamily):
    """HalfCheetah running forward (+1) or backward (-1) (MAML's HalfCheetahEnvRandDirec).

    Reward: ``direction * v - ctrl_cost_weight * |clip(a, -1, 1)|^2``.

    Args:
        ctrl_cost_weight: weight of the control cost.
        **kwargs: ``include_center_of_mass_in_observation``, ``reset_noise`` (as HalfCheetahVel) and
            HalfCheetah v5 arguments.
    """

    family_name = "HalfCheetahDir"
    _reward_params = ("direction",)

    def __init__(self, ctrl_cost_weight: float = 0.05, **kwargs: Any):
        _reject_kwargs(self.family_name, kwargs, ["forward_reward_weight"], "the reward is direction * v")
        self._init_v5(HalfCheetahEnv, ctrl_cost_weight=ctrl_cost_weight, **self._init_cheetah(kwargs))
        self._finish_cheetah()
        self._finish_init(dict(ctrl_cost_weight=ctrl_cost_weight, **kwargs),
                          Task.create(self.family_name, direction=1.0))

    def _forward_reward(self, x_velocity, task):
        return task["direction"] * x_velocity
