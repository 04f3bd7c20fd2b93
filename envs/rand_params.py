"""The rand_param_envs dynamics families (HopperRandParams, Walker2dRandParams) on Gymnasium's v5 envs: a task
rescales the model's masses, inertias, damping and friction."""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarl.envs.locomotion import RAND_PARAMS, _MujocoFamily
from metarl.envs.mujoco_batched import SimBatch
from metarl.tasks import Task, TaskParam

__all__ = ["HopperRandParamsEnv", "Walker2dRandParamsEnv"]


class _RandParamsFamily(_MujocoFamily):
    """Tasks rescale the model: ``field = default * base**u`` elementwise, ``u ~ U[-limit, limit]``.

    A task holds the exponents ``u`` as ``<field>_log_scale`` arrays shaped like the model fields
    (world body and floor included, as in rand_param_envs). Applying a task rescales from the
    defaults stored at construction (never compounding), then recomputes MuJoCo's derived
    constants (``mj_setConst``) for the new masses. The reward and termination are v5's.
    """

    _task_changes_model = True
    _reset_qvel_noise = "uniform"
    # base**limit must stay a finite, simulable scale (1.5**10 = 58x; 1e3 overflows the model)
    kwarg_bounds = {"log_scale_limit": "(0, 10]", "mass_scale_base": "(0, 10]", "inertia_scale_base": "(0, 10]",
                    "damping_scale_base": "(0, 10]", "friction_scale_base": "(0, 10]"}

    def _init_rand_params(self, log_scale_limit: float, scale_bases: dict[str, float]) -> None:
        if not (np.isfinite(log_scale_limit) and log_scale_limit > 0):
            raise ValueError(f"log_scale_limit must be positive and finite, got {log_scale_limit}")
        for field, base in scale_bases.items():
            if not (np.isfinite(base) and base > 0):
                raise ValueError(f"the scale base of {field} must be positive and finite, got {base}")
        self.log_scale_limit = float(log_scale_limit)
        self.scale_bases = {field: float(scale_bases[field]) for field in RAND_PARAMS}
        self._default_params = {field: getattr(self.model, field).copy() for field in RAND_PARAMS}

    def task_space(self) -> dict[str, TaskParam]:
        limit = self.log_scale_limit
        return {f"{field}_log_scale": TaskParam(-limit, limit, shape=default.shape)
                for field, default in self._default_params.items()}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        limit = self.log_scale_limit
        return [Task.create(self.family_name, **{
                    f"{field}_log_scale": rng.uniform(-limit, limit, size=default.shape)
                    for field, default in self._default_params.items()})
                for _ in range(n)]

    def default_task(self) -> Task:
        """The unmodified model (every exponent 0)."""
        return Task.create(self.family_name, **{f"{field}_log_scale": np.zeros(default.shape)
                                                for field, default in self._default_params.items()})

    def _apply_task(self, task: Task) -> None:
        self._configure_model(self.model, task)

    def _configure_model(self, model: mujoco.MjModel, task: Task) -> None:
        for field, default in self._default_params.items():
            scale = self.scale_bases[field] ** task[f"{field}_log_scale"]
            getattr(model, field)[:] = default * scale
        # Derived constants (subtree masses, inverse weights used by the constraint solver) follow
        # the new masses; a scratch MjData so the env's own simulation state is untouched.
        mujoco.mj_setConst(model, mujoco.MjData(model))

    def _batched_is_healthy(self, sims: SimBatch) -> np.ndarray:
        raise NotImplementedError

    def _batched_observation(self, sims: SimBatch) -> np.ndarray:
        skip = self.observation_structure["skipped_qpos"]
        return np.concatenate([sims.qpos[:, skip:], np.clip(sims.qvel, -10, 10)], axis=1)

    def _batched_x_velocity(self, before: SimBatch, after: SimBatch) -> np.ndarray:
        return (after.qpos[:, 0] - before.qpos[:, 0]) / self.dt

    def _get_rew(self, x_velocity: float, action):  # v5's own reward (its code, not ours), not the batched copy
        return super(_MujocoFamily, self)._get_rew(x_velocity, action)

    def _batched_reward(self, x_velocity, sims, actions, task):
        healthy_reward = self._batched_is_healthy(sims) * self._healthy_reward
        ctrl_cost = self._ctrl_cost_weight * np.sum(np.square(actions), axis=-1)
        return self._forward_reward_weight * x_velocity + healthy_reward - ctrl_cost

    def _batched_terminated(self, sims: SimBatch) -> np.ndarray:
        return ~self._batched_is_healthy(sims) & bool(self._terminate_when_unhealthy)


def _rand_params_kwargs(log_scale_limit, mass_scale_base, inertia_scale_base, damping_scale_base,
                        friction_scale_base) -> dict[str, float]:
    return dict(log_scale_limit=log_scale_limit, mass_scale_base=mass_scale_base,
                inertia_scale_base=inertia_scale_base, damping_scale_base=damping_scale_base,
                friction_scale_base=friction_scale_base)


class HopperRandParamsEnv(_RandParamsFamily, HopperEnv):
    """Hopper v5 with randomised physics (rand_param_envs' HopperRandParamsEnv, as in ProMP / PEARL).

    Args:
        log_scale_limit: exponents ``u ~ U[-log_scale_limit, log_scale_limit]``.
        mass_scale_base: body masses are scaled by ``mass_scale_base**u``.
        inertia_scale_base: body inertias are scaled by ``inertia_scale_base**u``.
        damping_scale_base: joint damping is scaled by ``damping_scale_base**u`` (1.3 in rand_param_envs).
        friction_scale_base: geom frictions are scaled by ``friction_scale_base**u``.
        **kwargs: Hopper v5 arguments (``frame_skip``, ``healthy_z_range``, ``reset_noise_scale``, ...).
    """

    family_name = "HopperRandParams"

    def __init__(self, log_scale_limit: float = 3.0, mass_scale_base: float = 1.5, inertia_scale_base: float = 1.5,
                 damping_scale_base: float = 1.3, friction_scale_base: float = 1.5, **kwargs: Any):
        self._init_v5(HopperEnv, **kwargs)
        own = _rand_params_kwargs(log_scale_limit, mass_scale_base, inertia_scale_base, damping_scale_base,
                                  friction_scale_base)
        self._init_rand_params(log_scale_limit, dict(body_mass=mass_scale_base, body_inertia=inertia_scale_base,
                                                     dof_damping=damping_scale_base,
                                                     geom_friction=friction_scale_base))
        self._finish_init(dict(own, **kwargs), self.default_task())

    def _batched_is_healthy(self, sims: SimBatch) -> np.ndarray:
        z, angle = sims.qpos[:, 1], sims.qpos[:, 2]
        state = np.concatenate([sims.qpos, sims.qvel], axis=1)[:, 2:]
        min_state, max_state = self._healthy_state_range
        min_z, max_z = self._healthy_z_range
        min_angle, max_angle = self._healthy_angle_range
        healthy_state = np.all((min_state < state) & (state < max_state), axis=1)
        return healthy_state & (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)


class Walker2dRandParamsEnv(_RandParamsFamily, Walker2dEnv):
    """Walker2d v5 with randomised physics (rand_param_envs' Walker2DRandParamsEnv, as in ProMP / PEARL).

    Registered with ``frame_skip=5`` (rand_param_envs' value; v5's default is 4).

    Args:
        log_scale_limit, mass_scale_base, inertia_scale_base, damping_scale_base, friction_scale_base:
            as :class:`HopperRandParamsEnv`.
        **kwargs: Walker2d v5 arguments.
    """

    family_name = "Walker2dRandParams"

    def __init__(self, log_scale_limit: float = 3.0, mass_scale_base: float = 1.5, inertia_scale_base: float = 1.5,
                 damping_scale_base: float = 1.3, friction_scale_base: float = 1.5, frame_skip: int = 5,
                 **kwargs: Any):
        self._init_v5(Walker2dEnv, frame_skip=frame_skip, **kwargs)
        own = _rand_params_kwargs(log_scale_limit, mass_scale_base, inertia_scale_base, damping_scale_base,
                                  friction_scale_base)
        self._init_rand_params(log_scale_limit, dict(body_mass=mass_scale_base, body_inertia=inertia_scale_base,
                                                     dof_damping=damping_scale_base,
                                                     geom_friction=friction_scale_base))
        self._finish_init(dict(own, frame_skip=frame_skip, **kwargs), self.default_task())

    def _batched_is_healthy(self, sims: SimBatch) -> np.ndarray:
        z, angle = sims.qpos[:, 1], sims.qpos[:, 2]
        min_z, max_z = self._healthy_z_range
        min_angle, max_angle = self._healthy_angle_range
        return (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)
