"""Batched MuJoCo backend: many (task, episode) simulations of a locomotion family stepped together.

:class:`MujocoBatchedEnv` is the sampler's fast path (:class:`metarl.batched.BatchedEnv`) for the
families in :mod:`metarl.envs.locomotion`. It produces the same observations, rewards and
terminations as the family's Gymnasium env for the same actions and reset seeds, bit for bit:

* The state of each simulation is MuJoCo's full integration state (``mjSTATE_INTEGRATION``:
  time, qpos, qvel, act, solver warm start, ctrl, applied forces, ...), one row of a
  ``(num_envs, nstate)`` array. A step loads a row into a scratch ``MjData``, runs exactly the
  calls Gymnasium runs (``mj_step(nstep=frame_skip)``, ``mj_rnePostConstraint``) and saves the row
  back; MuJoCo's dynamics depend on nothing else, so this equals one persistent ``MjData`` per
  simulation while keeping one scratch ``MjData`` per thread in cache (and memory small: 800 Ant
  simulations need 800 rows of 150 numbers, not 800 MjData).
* The simulations are split into contiguous chunks stepped by a small thread pool. MuJoCo's
  Python bindings release the GIL inside ``mj_step``, so the physics of the chunks runs in
  parallel on as many cores as there are threads.
* Observations, rewards and terminations are computed with NumPy over the whole batch by the
  family's ``_batched_*`` hooks.

``mujoco.rollout`` is not used: it neither returns the solver warm start nor the contact forces
(``cfrc_ext``) that Ant's observation and reward need, so a rollout restarted every env step drifts
away from the single env.

MuJoCo silently resets a simulation whose positions, velocities or accelerations blow up
(``"Nan, Inf or huge value in QACC"``). :func:`simulation_unstable` reads MuJoCo's warning
counters; the families and this backend end such an episode as truncated and report
``info["mujoco_instability"]``.

The family hooks this backend calls (all implemented in :mod:`metarl.envs.locomotion`):
``validate_task``, ``_configure_model(model, task)``, ``_task_values(tasks)``,
``_batched_observation(sims)``, ``_batched_transition(before, after, actions, task_values)``,
``_reset_noise()`` (the distributions and scales of the reset perturbation), and the attributes
``_task_changes_model``, ``_needs_contact_forces``, ``_tracks_main_body``,
``_observes_center_of_mass``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import mujoco
import numpy as np
from gymnasium.utils import seeding

from metarl.batched import BatchedEnv, StepResult
from metarl.tasks import check_positive_int

__all__ = [
    "MujocoBatchedEnv", "SimBatch", "reset_perturbation", "simulation_unstable", "INSTABILITY_WARNINGS",
    "usable_cpu_count", "state_offset",
]

#: MuJoCo warnings after which MuJoCo has reset the simulation (bad qpos, qvel or qacc).
INSTABILITY_WARNINGS = np.array([
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
    int(mujoco.mjtWarning.mjWARN_BADQACC),
])

_INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)


def simulation_unstable(data: mujoco.MjData) -> bool:
    """Whether MuJoCo reset ``data`` after a numerical blow-up since the last ``mj_resetData``.

    MuJoCo resets the simulation (and carries on) when qpos, qvel or qacc become NaN, infinite
    or huge, and only counts the event in ``data.warning``; the episode's later states are
    then unrelated to the earlier ones.
    """
    return bool(np.any(data.warning.number[INSTABILITY_WARNINGS]))


def usable_cpu_count() -> int:
    """CPU cores this process may run on (``$METARL_CPUS`` where set: a Ray sampler worker's share)."""
    if os.environ.get("METARL_CPUS", "").isdigit() and int(os.environ["METARL_CPUS"]) > 0:
        return int(os.environ["METARL_CPUS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class SimBatch(NamedTuple):
    """What a family's batched hooks see of every simulation after a reset or a step.

    Attributes:
        qpos: ``(num_envs, nq)`` joint positions.
        qvel: ``(num_envs, nv)`` joint velocities.
        main_body_xy: ``(num_envs, 2)`` x, y of the family's main body's ``xpos`` as MuJoCo
            left it after the step (Ant measures velocity with it), else ``None``.
        cfrc_ext: ``(num_envs, nbody, 6)`` external contact forces after
            ``mj_rnePostConstraint`` (Ant), else ``None``.
        center_of_mass: ``(num_envs, 3)`` the robot's center of mass (``subtree_com`` of body 1,
            the root) as MuJoCo left it after the step, where the family observes it, else ``None``.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    main_body_xy: np.ndarray | None
    cfrc_ext: np.ndarray | None
    center_of_mass: np.ndarray | None = None


def reset_perturbation(rng: np.random.Generator, kind: str, scale: float, size: int) -> np.ndarray:
    """A reset perturbation: ``U[-scale, scale]`` (``"uniform"``) or ``scale * N(0, 1)`` (``"normal"``).

    The one draw shared by the backend's ``reset`` and the families' own ``reset_model`` where they
    replace v5's, so both consume ``rng`` identically.
    """
    if kind == "uniform":
        return rng.uniform(low=-scale, high=scale, size=size)
    return scale * rng.standard_normal(size)


def state_offset(model: mujoco.MjModel, component: mujoco.mjtState) -> int:
    """Where ``component`` starts in an ``mjSTATE_INTEGRATION`` vector (components are in bit order)."""
    lower_bits = (int(component) - 1) & _INTEGRATION
    return mujoco.mj_stateSize(model, lower_bits)


class MujocoBatchedEnv(BatchedEnv):
    """All (task, episode) simulations of a MuJoCo locomotion family, stepped by a thread pool.

    Simulation ``i`` runs ``tasks[i // episodes_per_task]``. Built by the family env's
    ``batched(tasks, episodes_per_task)``.

    Args:
        env: the family env (unwrapped); its model and settings are copied, so the env may be
            closed or given other tasks afterwards.
        tasks: the tasks, validated by the family.
        episodes_per_task: simulations per task.
        nthread: threads stepping the physics (default: the usable CPU cores, at most
            ``num_envs``); 1 steps everything on the calling thread.
    """

    def __init__(self, env: Any, tasks: Sequence[Any], episodes_per_task: int, *, nthread: int | None = None):
        self._env = env
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.tasks = [env.validate_task(t) for t in tasks]
        if not self.tasks:
            raise ValueError("MujocoBatchedEnv needs at least one task")
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.frame_skip = int(env.frame_skip)
        num_envs = self.num_envs
        nthread = usable_cpu_count() if nthread is None else check_positive_int("nthread", nthread)
        self.nthread = min(nthread, num_envs)

        # One model per task when the task changes the physics, else one shared copy.
        self._model_per_task = bool(env._task_changes_model)
        n_models = len(self.tasks) if self._model_per_task else 1
        self._task_models = [copy.deepcopy(env.model) for _ in range(n_models)]
        model = self._task_models[0]
        self._nq, self._nv, self._nu = model.nq, model.nv, model.nu
        self._nstate = mujoco.mj_stateSize(model, _INTEGRATION)
        q0 = state_offset(model, mujoco.mjtState.mjSTATE_QPOS)
        v0 = state_offset(model, mujoco.mjtState.mjSTATE_QVEL)
        c0 = state_offset(model, mujoco.mjtState.mjSTATE_CTRL)
        self._qpos_cols = slice(q0, q0 + self._nq)
        self._qvel_cols = slice(v0, v0 + self._nv)
        self._ctrl_cols = slice(c0, c0 + self._nu)

        self._init_qpos = np.array(env.init_qpos, dtype=np.float64)
        self._init_qvel = np.array(env.init_qvel, dtype=np.float64)
        self._reset_noise = env._reset_noise()
        for kind, _ in self._reset_noise:
            if kind not in ("normal", "uniform"):
                raise ValueError(f"reset noise must be 'normal' or 'uniform', got {kind!r}")
        self._needs_contact_forces = bool(env._needs_contact_forces)
        self._main_body = model.body(env._main_body).id if env._tracks_main_body else None
        self._observes_com = bool(env._observes_center_of_mass)

        # Per-simulation state and what the hooks read, written row by row by the worker threads.
        self._states = np.zeros((num_envs, self._nstate))
        self._main_body_xy = np.zeros((num_envs, 2)) if self._main_body is not None else None
        self._cfrc_ext = np.zeros((num_envs, model.nbody, 6)) if self._needs_contact_forces else None
        self._com = np.zeros((num_envs, 3)) if self._observes_com else None
        self._warnings = np.zeros((num_envs, int(mujoco.mjtWarning.mjNWARNING)), dtype=np.int64)
        self._unstable = np.zeros(num_envs, dtype=bool)
        self._last: SimBatch | None = None

        self._scratch = [mujoco.MjData(model) for _ in range(self.nthread)]
        bounds = np.linspace(0, num_envs, self.nthread + 1).round().astype(int)
        self._chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        self._pool = (ThreadPoolExecutor(self.nthread - 1, thread_name_prefix="metarl-mujoco")
                      if self.nthread > 1 else None)
        self.set_tasks(self.tasks)

    # ------------------------------------------------------------------ tasks
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != len(self.tasks):
            raise ValueError(f"this backend runs {len(self.tasks)} tasks, got {len(tasks)}; build a new one "
                             "with env.unwrapped.batched(tasks, episodes_per_task) for another count")
        self.tasks = [self._env.validate_task(t) for t in tasks]
        task_index = self.task_index()
        if self._model_per_task:
            for model, task in zip(self._task_models, self.tasks):
                self._env._configure_model(model, task)
            self._sim_models = [self._task_models[k] for k in task_index]
        else:
            self._sim_models = [self._task_models[0]] * self.num_envs
        values = self._env._task_values(self.tasks)
        self._task_values = {name: np.asarray(v)[task_index] for name, v in values.items()}
        self._last = None  # a new task needs a reset

    # ------------------------------------------------------------------ reset / step
    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Reset simulation ``i`` exactly as ``env.reset(seed=seeds[i])`` does; return the observations."""
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds (one per simulation), got shape {seeds.shape}")
        if not np.issubdtype(seeds.dtype, np.integer) or np.any(seeds < 0):
            raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
        return self._reset_rows(np.arange(self.num_envs), seeds)

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Reset simulations ``indices`` as :meth:`reset` does; the others keep their state."""
        if self._last is None:
            raise RuntimeError("call reset(seeds) before reset_some")
        return self._reset_rows(np.asarray(indices, dtype=np.int64), np.asarray(seeds))

    def _reset_rows(self, indices: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        data = self._scratch[0]
        (qpos_kind, qpos_scale), (qvel_kind, qvel_scale) = self._reset_noise
        for i, seed in zip(indices.tolist(), seeds.tolist()):
            # The same draws, in the same order, as the family's reset_model.
            rng, _ = seeding.np_random(seed)
            qpos = self._init_qpos + reset_perturbation(rng, qpos_kind, qpos_scale, self._nq)
            qvel = self._init_qvel + reset_perturbation(rng, qvel_kind, qvel_scale, self._nv)
            model = self._sim_models[i]
            mujoco.mj_resetData(model, data)
            data.qpos[:] = qpos
            data.qvel[:] = qvel
            mujoco.mj_forward(model, data)
            self._save(i, model, data)
        self._unstable[indices] = False
        self._last = self._gather()
        return self._env._batched_observation(self._last)

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every simulation ``frame_skip`` physics steps with ``actions`` ``(num_envs, nu)``.

        ``info["mujoco_instability"]`` flags the simulations MuJoCo reset after a numerical blow-up
        since their last reset; their episodes are reported truncated.
        """
        if self._last is None:
            raise RuntimeError("call reset(seeds) before step (and after set_tasks)")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, self._nu):
            raise ValueError(f"actions must have shape {(self.num_envs, self._nu)}, got {actions.shape}")
        # mj_setState loads ctrl with the rest of the state (the same float64 cast as data.ctrl[:] = a).
        self._states[:, self._ctrl_cols] = actions
        if self._pool is None:
            self._step_chunk(0, self.num_envs, self._scratch[0])
        else:
            futures = [self._pool.submit(self._step_chunk, lo, hi, data)
                       for (lo, hi), data in zip(self._chunks[1:], self._scratch[1:])]
            self._step_chunk(*self._chunks[0], self._scratch[0])
            for future in futures:
                future.result()
        before, after = self._last, self._gather()
        self._last = after
        reward, terminated = self._env._batched_transition(before, after, actions, self._task_values)
        observation = self._env._batched_observation(after)
        self._unstable |= np.any(self._warnings[:, INSTABILITY_WARNINGS] > 0, axis=1)
        if self._unstable.any():  # as the single env: finite values on the step that ends a blown-up episode
            observation[self._unstable] = np.nan_to_num(observation[self._unstable], nan=0.0, posinf=0.0,
                                                        neginf=0.0)
            reward = np.where(self._unstable & ~np.isfinite(reward), 0.0, reward)
        truncated = self._unstable.copy()
        return observation, reward, terminated, truncated, {"mujoco_instability": self._unstable.copy()}

    def _step_chunk(self, lo: int, hi: int, data: mujoco.MjData) -> None:
        """Step simulations ``lo..hi-1`` on one scratch ``MjData`` (runs on a worker thread).

        Gymnasium's calls, in its order: ``mj_step(nstep=frame_skip)`` then ``mj_rnePostConstraint``
        (only where the family reads contact forces; it changes no state). This loop is the only
        Python run per simulation and step, so it is kept flat.
        """
        states, models, frame_skip = self._states, self._sim_models, self.frame_skip
        cfrc_ext, main_body_xy, main_body, com = self._cfrc_ext, self._main_body_xy, self._main_body, self._com
        warnings, warning_rows = data.warning.number, self._warnings
        set_state, get_state, step = mujoco.mj_setState, mujoco.mj_getState, mujoco.mj_step
        for i in range(lo, hi):
            model, state = models[i], states[i]
            set_state(model, data, state, _INTEGRATION)
            warnings[:] = 0  # counters are per simulation; mj_resetData clears them in the single env
            step(model, data, nstep=frame_skip)
            if cfrc_ext is not None:
                mujoco.mj_rnePostConstraint(model, data)
                cfrc_ext[i] = data.cfrc_ext
            if main_body_xy is not None:
                main_body_xy[i] = data.xpos[main_body, :2]
            if com is not None:
                com[i] = data.subtree_com[1]
            get_state(model, data, state, _INTEGRATION)
            warning_rows[i] = warnings

    def _save(self, i: int, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Store simulation ``i`` after a reset or ``set_state`` (steps store it in ``_step_chunk``).

        Gymnasium runs ``mj_rnePostConstraint`` after steps only, so the contact forces here are
        what ``mj_resetData`` + ``mj_forward`` leave, as in the single env.
        """
        if self._cfrc_ext is not None:
            self._cfrc_ext[i] = data.cfrc_ext
        if self._main_body_xy is not None:
            self._main_body_xy[i] = data.xpos[self._main_body, :2]
        if self._com is not None:
            self._com[i] = data.subtree_com[1]
        mujoco.mj_getState(model, data, self._states[i], _INTEGRATION)
        self._warnings[i] = data.warning.number

    def _gather(self) -> SimBatch:
        return SimBatch(
            qpos=self._states[:, self._qpos_cols].copy(),
            qvel=self._states[:, self._qvel_cols].copy(),
            main_body_xy=None if self._main_body_xy is None else self._main_body_xy.copy(),
            cfrc_ext=None if self._cfrc_ext is None else self._cfrc_ext.copy(),
            center_of_mass=None if self._com is None else self._com.copy(),
        )

    # ------------------------------------------------------------------ state access
    def get_state(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of simulation ``i``'s ``(qpos, qvel)``."""
        row = self._states[self._check_index(i)]
        return row[self._qpos_cols].copy(), row[self._qvel_cols].copy()

    def set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Set simulation ``i``'s positions and velocities, as the single env's ``set_state`` does.

        For custom initial states, debugging and tests (e.g. forcing a numerical blow-up).
        """
        i = self._check_index(i)
        if self._last is None:
            raise RuntimeError("call reset(seeds) before set_state")
        qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
        if qpos.shape != (self._nq,) or qvel.shape != (self._nv,):
            raise ValueError(f"need qpos of shape ({self._nq},) and qvel of shape ({self._nv},), "
                             f"got {qpos.shape} and {qvel.shape}")
        model, data = self._sim_models[i], self._scratch[0]
        mujoco.mj_setState(model, data, self._states[i], _INTEGRATION)
        data.warning.number[:] = self._warnings[i]
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(model, data)
        self._save(i, model, data)
        # The next step's velocity is measured from here, as in the single env.
        self._last.qpos[i], self._last.qvel[i] = qpos, qvel
        if self._main_body_xy is not None:
            self._last.main_body_xy[i] = self._main_body_xy[i]
        if self._com is not None:
            self._last.center_of_mass[i] = self._com[i]

    def _check_index(self, i: int) -> int:
        if not 0 <= int(i) < self.num_envs:
            raise IndexError(f"simulation index {i} out of range for {self.num_envs} simulations")
        return int(i)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
