"""MuJoCo locomotion task families: the MAML-RL HalfCheetah / Ant tasks and the rand_param_envs
Hopper / Walker2d dynamics tasks, on Gymnasium's MuJoCo v5 environments.

Each family subclasses a Gymnasium v5 env and :class:`metarl.TaskFamily`; a task changes the
reward (``_get_rew``, v5's reward hook) or the model's physical parameters. Exact definitions and
the differences from the original code are in ``docs/mujoco_families.md``.

| family | task | reward per step |
| --- | --- | --- |
| HalfCheetahVel | ``velocity`` ~ U[0, 2] | ``-|v - velocity| - 0.05 |clip(a)|^2`` |
| HalfCheetahDir | ``direction`` in {-1, +1} | ``direction * v - 0.05 |clip(a)|^2`` |
| AntVel | ``velocity`` ~ U[0, 3] | ``-|v - velocity| + 1 - costs + 0.05`` |
| AntDir | ``direction`` in {-1, +1} | ``direction * v - costs + 0.05`` |
| AntGoal | ``goal`` ~ U[-3, 3]^2 | ``-|xy - goal|_1 + 4 - costs + 0.05`` |
| HopperRandParams, Walker2dRandParams | log-scales ``u`` ~ U[-3, 3] of masses, inertias, damping, friction | v5's |

``v`` is the forward velocity of the torso over the step (Gymnasium v5's ``x_velocity``); Ant's
``costs`` are ``0.005 |a|^2 + 0.0005 |clip(cfrc_ext, -1, 1)|^2``.

Every family reports MuJoCo's silent reset after a numerical blow-up: the step is truncated and
``info["mujoco_instability"]`` is True. ``env.unwrapped.batched(tasks, episodes_per_task)``
returns the threaded batched backend (:class:`metarl.envs.mujoco_batched.MujocoBatchedEnv`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.spaces import Box

from metarl.envs.mujoco_batched import MujocoBatchedEnv, SimBatch, reset_perturbation, simulation_unstable
from metarl.tasks import Task, TaskFamily, TaskParam

__all__ = [
    "HalfCheetahVelEnv",
    "HalfCheetahDirEnv",
    "AntVelEnv",
    "AntDirEnv",
    "AntGoalEnv",
    "HopperRandParamsEnv",
    "Walker2dRandParamsEnv",
    "RAND_PARAMS",
]

#: Model fields the RandParams families rescale (rand_param_envs' ``RAND_PARAMS``).
RAND_PARAMS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")


def _check_range(name: str, low: float, high: float) -> tuple[float, float]:
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{name} range must be finite with low < high, got [{low}, {high}]")
    return float(low), float(high)


def _reject_kwargs(family: str, kwargs: dict[str, Any], names: Sequence[str], why: str) -> None:
    given = [n for n in names if n in kwargs]
    if given:
        raise TypeError(f"{family} does not take {', '.join(given)}: {why}")



@contextlib.contextmanager
def _without_settotalmass_notice() -> Iterator[None]:
    """Drop MuJoCo's "compiler attribute 'settotalmass' is deprecated" notice (printed by its C library to the
    process's stderr when Gymnasium's v5 XML is compiled, i.e. into a user's progress bar); any other output
    of the block still reaches stderr."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a real file (e.g. captured): nothing to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = "\n".join(line for line in text.splitlines() if "settotalmass" not in line and line.strip())
            if kept:
                sys.stderr.write(kept + "\n")

class _MujocoFamily(TaskFamily):
    """What every locomotion family shares: instability reporting, the batched backend, pickling.

    Subclasses put this class before the Gymnasium env class in their bases, so ``step`` here
    wraps the v5 env's ``step``.
    """

    # Read by MujocoBatchedEnv (see its module docstring).
    _task_changes_model: ClassVar[bool] = False  # the task rescales the model (else only the reward)
    _reset_qvel_noise: ClassVar[str] = "normal"  # how v5's reset_model perturbs qvel
    _needs_contact_forces: ClassVar[bool] = False  # reads data.cfrc_ext after mj_rnePostConstraint
    _tracks_main_body: ClassVar[bool] = False  # measures velocity with data.body(main_body).xpos
    _reward_params: ClassVar[tuple[str, ...]] = ()  # task parameters the batched reward reads
    _observes_center_of_mass: bool = False  # the observation ends with data.subtree_com[1]

    def _init_v5(self, env_class: type, **kwargs: Any) -> None:
        """Run the Gymnasium v5 ``__init__`` of ``env_class`` after checking the arguments it does not."""
        frame_skip = kwargs.get("frame_skip")
        if "frame_skip" in kwargs and (isinstance(frame_skip, bool) or not isinstance(frame_skip, (int, np.integer))
                                       or frame_skip < 1):
            raise ValueError(f"{self.family_name}: frame_skip must be a positive integer (physics steps per env "
                             f"step), got {frame_skip!r}; e.g. frame_skip=1 for the original MAML-RL cheetah's dt")
        with _without_settotalmass_notice():
            env_class.__init__(self, **kwargs)

    def _finish_init(self, init_kwargs: dict[str, Any], default_task: Task) -> None:
        # The v5 __init__ recorded its own positional arguments for pickling; record ours instead.
        utils.EzPickle.__init__(self, **init_kwargs)
        self.set_task(default_task)

    def step(self, action):
        """The v5 step, truncated with ``info["mujoco_instability"] = True`` after a blow-up."""
        observation, reward, terminated, truncated, info = super().step(action)
        unstable = simulation_unstable(self.data)
        info["mujoco_instability"] = unstable
        if unstable:  # the episode ends here; its last step reports finite values, not the blow-up's NaN
            observation = np.nan_to_num(observation, nan=0.0, posinf=0.0, neginf=0.0)
            reward = reward if np.isfinite(reward) else 0.0
        return observation, float(reward), bool(terminated), bool(truncated) or unstable, info

    def batched(self, tasks: Sequence[Task], episodes_per_task: int, *,
                nthread: int | None = None) -> MujocoBatchedEnv:
        """The sampler's fast path: all (task, episode) simulations stepped together.

        Same observations, rewards and terminations as this env for the same actions and seeds.

        Args:
            tasks: tasks of this family.
            episodes_per_task: simulations per task.
            nthread: physics threads (default: the usable CPU cores).
        """
        return MujocoBatchedEnv(self, tasks, episodes_per_task, nthread=nthread)

    # ------------------------------------------------------------------ batched hooks
    def _reset_noise(self) -> tuple[tuple[str, float], tuple[str, float]]:
        """``reset_model``'s perturbations of qpos and qvel, each ``(distribution, scale)``.

        ``"uniform"`` is ``U[-scale, scale]``, ``"normal"`` is ``scale * N(0, 1)``; qpos is drawn first.
        """
        scale = float(self._reset_noise_scale)
        return ("uniform", scale), (self._reset_qvel_noise, scale)

    def _configure_model(self, model: mujoco.MjModel, task: Task) -> None:
        """Make ``model`` simulate ``task`` (only families whose tasks change the physics)."""

    def _task_values(self, tasks: Sequence[Task]) -> dict[str, np.ndarray]:
        """The reward's task parameters, stacked over ``tasks``."""
        return {name: np.stack([np.asarray(t[name], dtype=np.float64) for t in tasks])
                for name in self._reward_params}

    def _batched_observation(self, sims: SimBatch) -> np.ndarray:
        raise NotImplementedError

    def _batched_x_velocity(self, before: SimBatch, after: SimBatch) -> np.ndarray:
        raise NotImplementedError

    def _batched_reward(self, x_velocity: np.ndarray, sims: SimBatch, actions: np.ndarray,
                        task: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _batched_terminated(self, sims: SimBatch) -> np.ndarray:
        raise NotImplementedError

    def _batched_transition(self, before: SimBatch, after: SimBatch, actions: np.ndarray,
                            task: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Rewards and terminations of a batched step, as the single env's ``step`` computes them."""
        x_velocity = self._batched_x_velocity(before, after)
        reward = self._batched_reward(x_velocity, after, actions, task)
        return np.asarray(reward, dtype=np.float64), self._batched_terminated(after)

    # ------------------------------------------------------------------ pickling keeps the task
    def __getstate__(self) -> dict[str, Any]:
        state = utils.EzPickle.__getstate__(self)
        state["metarl_task"] = self._task
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        task = state.pop("metarl_task", None)
        utils.EzPickle.__setstate__(self, state)
        if task is not None:
            self.set_task(task)


# ---------------------------------------------------------------------- HalfCheetah
class _TargetVelocityTasks:
    """Tasks = a target forward velocity ~ U[velocity_low, velocity_high] (HalfCheetahVel, AntVel)."""

    family_name: str
    velocity_low: float
    velocity_high: float

    def task_space(self) -> dict[str, TaskParam]:
        return {"velocity": TaskParam(self.velocity_low, self.velocity_high)}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.create(self.family_name, velocity=v)
                for v in rng.uniform(self.velocity_low, self.velocity_high, size=n)]

    def _apply_task(self, task: Task) -> None:
        self._target_velocity = float(task["velocity"])


class _DirectionTasks:
    """Tasks = a running direction, -1 or +1 with equal probability (HalfCheetahDir, AntDir)."""

    family_name: str

    def task_space(self) -> dict[str, TaskParam]:
        return {"direction": TaskParam(choices=(-1.0, 1.0))}

    def _draw_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task.create(self.family_name, direction=d) for d in rng.choice([-1.0, 1.0], size=n)]

    def _apply_task(self, task: Task) -> None:
        self._direction = float(task["direction"])


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

    def _get_rew(self, x_velocity: float, action):
        forward_reward = -abs(x_velocity - self._target_velocity)
        ctrl_cost = self._ctrl_cost(action)
        return forward_reward - ctrl_cost, {"reward_forward": forward_reward, "reward_ctrl": -ctrl_cost}

    def _batched_reward(self, x_velocity, sims, actions, task):
        return -np.abs(x_velocity - task["velocity"]) - self._ctrl_cost(actions)


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

    def _get_rew(self, x_velocity: float, action):
        forward_reward = self._direction * x_velocity
        ctrl_cost = self._ctrl_cost(action)
        return forward_reward - ctrl_cost, {"reward_forward": forward_reward, "reward_ctrl": -ctrl_cost}

    def _batched_reward(self, x_velocity, sims, actions, task):
        return task["direction"] * x_velocity - self._ctrl_cost(actions)


# ---------------------------------------------------------------------- Ant
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

    def _ant_reward(self, task_reward: float, action, task_reward_name: str):
        ctrl_cost = self.control_cost(action)
        contact_cost = self.contact_cost
        reward = task_reward - ctrl_cost - contact_cost + self._healthy_reward
        return reward, {task_reward_name: task_reward, "reward_ctrl": -ctrl_cost,
                        "reward_contact": -contact_cost, "reward_survive": self._healthy_reward}

    def _batched_costs(self, sims: SimBatch, actions: np.ndarray) -> np.ndarray:
        ctrl_cost = self._ctrl_cost_weight * np.sum(np.square(actions), axis=-1)
        low, high = self._contact_force_range
        forces = np.clip(sims.cfrc_ext, low, high).reshape(len(sims.cfrc_ext), -1)
        contact_cost = self._contact_cost_weight * np.sum(np.square(forces), axis=-1)
        return ctrl_cost + contact_cost

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

    def _get_rew(self, x_velocity: float, action):
        return self._ant_reward(-abs(x_velocity - self._target_velocity) + 1.0, action, "reward_forward")

    def _batched_reward(self, x_velocity, sims, actions, task):
        task_reward = -np.abs(x_velocity - task["velocity"]) + 1.0
        return task_reward - self._batched_costs(sims, actions) + self._healthy_reward


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

    def _get_rew(self, x_velocity: float, action):
        return self._ant_reward(self._direction * x_velocity, action, "reward_forward")

    def _batched_reward(self, x_velocity, sims, actions, task):
        return task["direction"] * x_velocity - self._batched_costs(sims, actions) + self._healthy_reward


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

    def _get_rew(self, x_velocity: float, action):
        # A float64 scalar (not a Python float, which NumPy 2 would demote to the float32 of the costs).
        goal_reward = -np.sum(np.abs(self.data.qpos[:2] - self._goal)) + 4.0
        return self._ant_reward(goal_reward, action, "reward_goal")

    def _batched_reward(self, x_velocity, sims, actions, task):
        goal_reward = -np.sum(np.abs(sims.qpos[:, :2] - task["goal"]), axis=1) + 4.0
        return goal_reward - self._batched_costs(sims, actions) + self._healthy_reward


# ---------------------------------------------------------------------- RandParams
class _RandParamsFamily(_MujocoFamily):
    """Tasks rescale the model: ``field = default * base**u`` elementwise, ``u ~ U[-limit, limit]``.

    A task holds the exponents ``u`` as ``<field>_log_scale`` arrays shaped like the model fields
    (world body and floor included, as in rand_param_envs). Applying a task rescales from the
    defaults stored at construction (never compounding), then recomputes MuJoCo's derived
    constants (``mj_setConst``) for the new masses. The reward and termination are v5's.
    """

    _task_changes_model = True
    _reset_qvel_noise = "uniform"

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
