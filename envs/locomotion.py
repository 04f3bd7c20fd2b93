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

This module holds what the families share; the families are in :mod:`metarl.envs.cheetah`,
:mod:`metarl.envs.ant` and :mod:`metarl.envs.rand_params`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import utils

from metarl.envs.mujoco_batched import MujocoBatchedEnv, SimBatch, simulation_unstable
from metarl.tasks import Task, TaskFamily, TaskParam

__all__ = ["RAND_PARAMS", "SimBatch"]

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
        """The v5 step, truncated with ``info["mujoco_instability"] = True`` after a blow-up.

        Raises:
            ValueError: the action holds NaN or inf (MuJoCo would turn it into a NaN reward without a word).
        """
        if not np.all(np.isfinite(np.asarray(action, dtype=np.float64))):
            raise ValueError(f"{type(self).__name__}.step: the action holds NaN or inf ({np.asarray(action)!r:.80}); "
                             "give finite actions")
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

    def _reward_terms(self, x_velocity: np.ndarray, sims: SimBatch, actions: np.ndarray,
                      task: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The family's reward, written once: its named terms for a batch of simulations (they sum to the
        reward). The single env's ``_get_rew`` evaluates it on a batch of one, the batched backend on all."""
        raise NotImplementedError

    def _batched_reward(self, x_velocity: np.ndarray, sims: SimBatch, actions: np.ndarray,
                        task: dict[str, np.ndarray]) -> np.ndarray:
        terms = list(self._reward_terms(x_velocity, sims, actions, task).values())
        return functools.reduce(np.add, terms)

    def _own_state(self) -> SimBatch:
        """This env's simulation after its step, as a batch of one (what the batched hooks read)."""
        data = self.data
        main_body = data.body(self._main_body).xpos[:2].copy()[None] if self._tracks_main_body else None
        return SimBatch(data.qpos.copy()[None], data.qvel.copy()[None], main_body,
                        data.cfrc_ext.copy()[None] if self._needs_contact_forces else None,
                        data.subtree_com[1].copy()[None] if self._observes_center_of_mass else None)

    def _get_rew(self, x_velocity: float, action):
        terms = self._reward_terms(np.array([x_velocity]), self._own_state(), np.asarray(action)[None],
                                   self._task_values([self._task]))
        reward = functools.reduce(np.add, terms.values())[0]
        return reward, {name: term[0] for name, term in terms.items()}

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


# ---------------------------------------------------------------------- task distributions shared by families
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
