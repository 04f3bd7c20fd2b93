"""Batched Meta-World backend: many (task, episode) simulations of Meta-World tasks stepped together.

:class:`MetaWorldBatchedEnv` is the sampler's fast path (:class:`metarl.batched.BatchedEnv`) for the
Meta-World families (:mod:`metarl.envs.meta_world`). Per env step, Meta-World's own ``SawyerXYZEnv.step``
spends 2-15x the physics' time in Python (observation and reward on 3-vectors); here

* the mocap and gripper controls of every simulation are set in one NumPy operation on a
  ``(num_envs, nstate)`` array of MuJoCo integration states (``mjSTATE_INTEGRATION``, which holds
  ``mocap_pos``, ``mocap_quat`` and ``ctrl``);
* a thread pool loads each row into a scratch ``MjData`` of its task class, runs exactly Meta-World's
  physics calls (``mj_step(nstep=frame_skip)``, then ``mj_forward``), copies the body, site and geom
  poses the observation and reward read, and saves the row (MuJoCo releases the GIL inside its calls);
* the observation (hand, gripper opening, object poses, the previous frame, the hidden goal, clipped
  as Meta-World clips it) and the reward and success of each task class are computed over all
  simulations of the class at once by a *port* of that class's ``evaluate_state`` (:mod:`metarl.envs.meta_world_ports`).

Resets run Meta-World's own ``reset`` on the family's env of the class (the goal, object placement and
the 50-step hand reset), then take over its state, its model (where the reset moved sites and bodies)
and the constants its reward reads (initial object and gripper positions); a reset costs what the
single env's does, once per task. A task's model is kept as the arrays where it differs from its class's
model (``body_pos``, ``site_pos``: bytes, not the ~20 MB of a whole Meta-World model), and whole models are
held only for the tasks the backend runs now: ML10's 750 tasks would otherwise hold 15 GB.

Classes with a port: :data:`PORTED_CLASSES`. A family whose tasks include another class runs on the
generic backend (one Meta-World env per simulation); ``tests/test_metaworld.py`` checks every port
against Meta-World's env on the same tasks and actions (observations, rewards and success flags).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from metarl.batched import BatchedEnv, StepResult
from metarl.envs.meta_world_ports import PORTED_CLASSES, PORTS, Poses
from metarl.envs.meta_world_rewards import norm
from metarl.envs.mujoco_batched import state_offset, usable_cpu_count
from metarl.tasks import check_positive_int

__all__ = ["MetaWorldBatchedEnv", "PORTED_CLASSES"]

_INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)
_HAND_LOW, _HAND_HIGH = np.array([-0.525, 0.348, -0.0525]), np.array([+0.525, 1.025, 0.7])  # SawyerXYZEnv._HAND_SPACE




def model_difference(model: Any, reference: Any) -> dict[str, np.ndarray]:
    """The array fields of ``model`` (an ``MjModel``) that differ from ``reference``'s (same structure), copied."""
    out = {}
    for name in dir(model):
        value = getattr(model, name, None) if not name.startswith("_") else None
        if isinstance(value, np.ndarray) and not np.array_equal(value, getattr(reference, name), equal_nan=True):
            out[name] = value.copy()
    return out


# ----- the backend ------------------------------------------------------------------------------------------
class _ClassGroup:
    """The simulations of one task class: their rows, a scratch ``MjData`` per thread, and the pose buffers."""

    def __init__(self, name: str, env: Any, rows: np.ndarray, nthread: int):
        self.name, self.port, self.rows = name, PORTS[name], rows
        model = env.model
        if model.nmocap != 1:
            raise ValueError(f"{name}: the batched Meta-World backend moves one mocap body, the model has {model.nmocap}")
        self.frame_skip = int(env.frame_skip)
        self.action_scale = env.action_scale
        self.mocap_low, self.mocap_high = np.array(env.mocap_low), np.array(env.mocap_high)
        self.max_path_length = int(env.max_path_length)
        self.nstate = mujoco.mj_stateSize(model, _INTEGRATION)
        names: dict[str, dict[str, int]] = {"body": {}, "site": {}, "geom": {}, "joint": {}}
        frames = [self.port.position_of, *([self.port.quat_source] if self.port.quat_source else [])]
        for kind, wanted in (("body", ("hand", "rightclaw", "leftclaw", "leftpad", "rightpad", *self.port.bodies)),
                             ("site", ("rightEndEffector", "leftEndEffector", *self.port.sites)),
                             ("geom", self.port.geoms), ("joint", self.port.joints)):
            wanted = (*wanted, *(n for k, n in frames if k == kind))
            for k, n in enumerate(dict.fromkeys(wanted)):
                names[kind][n] = k
        self.body_ids = np.array([model.body(n).id for n in names["body"]], dtype=np.int64)
        self.site_ids = np.array([model.site(n).id for n in names["site"]], dtype=np.int64)
        self.geom_ids = np.array([model.geom(n).id for n in names["geom"]], dtype=np.int64)
        self.qpos_ids = np.array([model.joint(n).qposadr[0] for n in names["joint"]], dtype=np.int64)
        n = len(rows)
        self.xpos = np.zeros((n, len(self.body_ids), 3))
        self.xquat = np.zeros((n, len(self.body_ids), 4))
        self.site_xpos = np.zeros((n, len(self.site_ids), 3))
        self.site_xmat = np.zeros((n, len(self.site_ids), 9))
        self.geom_xpos = np.zeros((n, len(self.geom_ids), 3))
        self.geom_xmat = np.zeros((n, len(self.geom_ids), 9))
        self.qpos = np.zeros((n, len(self.qpos_ids)))
        self.poses = Poses(self.xpos, self.xquat, self.site_xpos, self.site_xmat, self.geom_xpos, self.geom_xmat,
                            self.qpos, names)
        self.models: list[Any] = [model] * n
        self.scratch = [mujoco.MjData(model) for _ in range(nthread)]
        self.constants: dict[str, np.ndarray] = {}
        self.prev_obs = np.zeros((n, 18))
        mocap = state_offset(model, mujoco.mjtState.mjSTATE_MOCAP_POS)
        quat = state_offset(model, mujoco.mjtState.mjSTATE_MOCAP_QUAT)
        ctrl = state_offset(model, mujoco.mjtState.mjSTATE_CTRL)
        self.mocap_cols = slice(mocap, mocap + 3 * model.nmocap)
        self.quat_cols = slice(quat, quat + 4 * model.nmocap)
        self.ctrl_cols = slice(ctrl, ctrl + model.nu)

    def read(self, j: int, data: mujoco.MjData) -> None:
        """Copy simulation ``j``'s poses from ``data`` (after ``mj_forward``)."""
        self.xpos[j] = data.xpos[self.body_ids]
        self.xquat[j] = data.xquat[self.body_ids]
        self.site_xpos[j] = data.site_xpos[self.site_ids]
        self.site_xmat[j] = data.site_xmat[self.site_ids]
        if len(self.geom_ids):
            self.geom_xpos[j] = data.geom_xpos[self.geom_ids]
            self.geom_xmat[j] = data.geom_xmat[self.geom_ids]
        if len(self.qpos_ids):
            self.qpos[j] = data.qpos[self.qpos_ids]


class MetaWorldBatchedEnv(BatchedEnv):
    """All (task, episode) simulations of a Meta-World family whose task classes all have a port.

    Built by the family env's ``batched(tasks, episodes_per_task)``. Simulation ``i`` runs
    ``tasks[i // episodes_per_task]``.

    Args:
        family: the family env (:class:`metarl.envs.meta_world._MetaWorldFamily`); its Meta-World env of each
            class performs the resets.
        tasks: the family's tasks.
        episodes_per_task: simulations per task.
        nthread: physics threads (default: the usable CPU cores, at most ``num_envs``).
    """

    def __init__(self, family: Any, tasks: Sequence[Any], episodes_per_task: int, *, nthread: int | None = None):
        self._family = family
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.single_observation_space = family.observation_space
        self.single_action_space = family.action_space
        nthread = usable_cpu_count() if nthread is None else check_positive_int("nthread", nthread)
        self._nthread_wanted = nthread
        self._pool: ThreadPoolExecutor | None = None
        self._reset_cache: dict[tuple[str, int], Any] = {}
        self._class_models: dict[str, Any] = {}  # each class's model as first reset: what task models differ from
        self._task_models: dict[tuple[str, int], Any] = {}  # whole models of the tasks set now
        self.tasks = []
        self.set_tasks(tasks)

    # ------------------------------------------------------------------ tasks
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        tasks = [self._family.validate_task(t) for t in tasks]
        if not tasks:
            raise ValueError("MetaWorldBatchedEnv needs at least one task")
        missing = sorted({t["name"] for t in tasks} - set(PORTS))
        if missing:
            raise ValueError(f"no batched port for Meta-World classes {missing}; the generic backend runs them")
        if self.tasks and len(tasks) != len(self.tasks):
            raise ValueError(f"this backend runs {len(self.tasks)} tasks, got {len(tasks)}")
        self.tasks = tasks
        keep = {(t["split"], t["index"]) for t in tasks}
        self._task_models = {k: m for k, m in self._task_models.items() if k in keep}
        self.nthread = min(self._nthread_wanted, self.num_envs)
        if self._pool is None and self.nthread > 1:
            self._pool = ThreadPoolExecutor(self.nthread - 1, thread_name_prefix="metarl-metaworld")
        names = np.array([t["name"] for t in tasks])[self.task_index()]
        self._groups: list[_ClassGroup] = []
        self._sim_group = np.zeros(self.num_envs, dtype=np.int64)
        self._sim_row = np.zeros(self.num_envs, dtype=np.int64)
        for name in dict.fromkeys(names.tolist()):
            rows = np.flatnonzero(names == name)
            self._family.set_task(tasks[int(rows[0]) // self.episodes_per_task])
            self._sim_group[rows] = len(self._groups)
            self._sim_row[rows] = np.arange(len(rows))
            self._groups.append(_ClassGroup(name, self._family._current, rows, self.nthread))
        self._states = [np.zeros((len(g.rows), g.nstate)) for g in self._groups]
        self._path_length = np.zeros(self.num_envs, dtype=np.int64)
        self._obs = np.zeros((self.num_envs, 39))
        bounds = np.linspace(0, self.num_envs, self.nthread + 1).round().astype(int)
        self._chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        self._ready = False

    # ------------------------------------------------------------------ reset / step
    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Reset every simulation as Meta-World's own reset does (the seeds do not matter: Meta-World's resets
        are determined by the task)."""
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds (one per simulation), got shape {seeds.shape}")
        self._ready = True
        return self._reset_rows(np.arange(self.num_envs))

    def reset_some(self, indices: np.ndarray, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        if not self._ready:
            raise RuntimeError("call reset(seeds) before reset_some")
        return self._reset_rows(np.asarray(indices, dtype=np.int64))

    def _reset_rows(self, indices: np.ndarray) -> np.ndarray:
        for i in indices.tolist():
            task = self.tasks[i // self.episodes_per_task]
            first, state, consts, prev = self._task_reset(task)
            model = self._task_model(task)
            k, j = int(self._sim_group[i]), int(self._sim_row[i])
            g = self._groups[k]
            self._states[k][j] = state
            g.models[j] = model
            for key, value in consts.items():
                if key not in g.constants:
                    g.constants[key] = np.zeros((len(g.rows), *value.shape))
                g.constants[key][j] = value
            g.prev_obs[j] = prev
            self._obs[i] = first
            self._path_length[i] = 0
        return self._obs.copy()

    def _task_reset(self, task: Any) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Meta-World's reset of ``task``: first observation, integration state, reward constants and the frame the
        next observation stacks (its model: :meth:`_task_model`). Meta-World's reset is determined by the task (its
        goal and object placement are the task's frozen random vector, the simulation starts from
        ``mj_resetData``), so it runs once per task and is reused."""
        key = (task["split"], task["index"])
        if key not in self._reset_cache:
            self._family.set_task(task)
            env = self._family._current
            first, _ = env.reset()
            state = np.zeros(mujoco.mj_stateSize(env.model, _INTEGRATION))
            mujoco.mj_getState(env.model, env.data, state, _INTEGRATION)
            if task["name"] not in self._class_models:
                self._class_models[task["name"]] = copy.deepcopy(env.model)
            reference = self._class_models[task["name"]]
            self._reset_cache[key] = (np.asarray(first, dtype=np.float64), state,
                                      PORTS[task["name"]].constants(env), np.array(env._prev_obs, dtype=np.float64),
                                      model_difference(env.model, reference))
        return self._reset_cache[key][:4]

    def _task_model(self, task: Any) -> Any:
        """``task``'s model after Meta-World's reset: its class's model with the task's differing arrays, built once
        while the task is set (the class's own model where nothing differs)."""
        key = (task["split"], task["index"])
        if key not in self._task_models:
            reference, difference = self._class_models[task["name"]], self._reset_cache[key][4]
            model = reference
            if difference:
                model = copy.deepcopy(reference)
                for name, value in difference.items():
                    getattr(model, name)[...] = value
            self._task_models[key] = model
        return self._task_models[key]

    def step(self, actions: np.ndarray) -> StepResult:
        """Meta-World's ``step`` for every simulation: mocap moved by ``actions[:, :3] * action_scale`` (clipped to
        the mocap box), gripper control ``(a3, -a3)``, ``frame_skip`` physics steps, then the observation, reward
        and ``info["success"]`` of each simulation's class."""
        if not self._ready:
            raise RuntimeError("call reset(seeds) before step (and after set_tasks)")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, 4):
            raise ValueError(f"actions must have shape {(self.num_envs, 4)}, got {actions.shape}")
        for g, states in zip(self._groups, self._states):
            a = actions[g.rows]
            mocap = states[:, g.mocap_cols] + np.clip(a[:, :3], -1, 1) * g.action_scale
            states[:, g.mocap_cols.start:g.mocap_cols.start + 3] = np.clip(mocap[:, :3], g.mocap_low, g.mocap_high)
            states[:, g.quat_cols.start:g.quat_cols.start + 4] = (1.0, 0.0, 1.0, 0.0)
            states[:, g.ctrl_cols] = np.stack([a[:, -1], -a[:, -1]], axis=1)
        if self._pool is None:
            self._step_chunk(0, self.num_envs, 0)
        else:
            futures = [self._pool.submit(self._step_chunk, lo, hi, k + 1)
                       for k, (lo, hi) in enumerate(self._chunks[1:])]
            self._step_chunk(*self._chunks[0], 0)
            for future in futures:
                future.result()
        self._path_length += 1
        obs = np.zeros((self.num_envs, 39))
        reward = np.zeros(self.num_envs)
        success = np.zeros(self.num_envs, dtype=bool)
        quats = self._quaternions()
        for g, quat in zip(self._groups, quats):
            p = g.poses
            hand = p.body("hand")
            gripper = np.clip(norm(p.body("rightclaw") - p.body("leftclaw")) / 0.1, 0.0, 1.0)
            objects = np.zeros((len(g.rows), 14))
            objects[:, :3], objects[:, 3:7] = g.port.position(p), quat
            current = np.concatenate([hand, gripper[:, None], objects], axis=1)
            o = np.concatenate([current, g.prev_obs, np.zeros((len(g.rows), 3))], axis=1)
            g.prev_obs = current
            o[:, 0:3] = np.clip(o[:, 0:3], _HAND_LOW, _HAND_HIGH)
            o[:, 18:21] = np.clip(o[:, 18:21], _HAND_LOW, _HAND_HIGH)
            o[:, [3, 21]] = np.clip(o[:, [3, 21]], -1.0, 1.0)
            r, s = g.port.evaluate(p, o, actions[g.rows], {k: v for k, v in g.constants.items()})
            obs[g.rows], reward[g.rows], success[g.rows] = o, r, s
        self._obs = obs
        truncated = self._path_length >= np.array([g.max_path_length for g in self._groups])[self._sim_group]
        return obs.copy(), reward, np.zeros(self.num_envs, dtype=bool), truncated, {"success": success.astype(np.float64)}

    def _quaternions(self) -> list[np.ndarray]:
        """Each class's observed object quaternions ``(n, 4)``; the rotation matrices of all classes converted in one
        SciPy call (its per-call cost is what a small batch of many classes pays)."""
        out: list[np.ndarray] = []
        matrices, owners = [], []
        for k, g in enumerate(self._groups):
            source = g.port.quat_source
            if source is None:
                out.append(np.zeros((len(g.rows), 4)))
            elif source[0] == "body":
                out.append(g.poses.body_quat(source[1]))
            else:
                out.append(np.zeros((0, 4)))
                matrices.append(g.poses.matrix(*source))
                owners.append(k)
        if matrices:
            converted = Rotation.from_matrix(np.concatenate(matrices).reshape(-1, 3, 3)).as_quat()
            for k, part in zip(owners, np.split(converted, np.cumsum([len(m) for m in matrices])[:-1])):
                out[k] = part
        return out

    def _step_chunk(self, lo: int, hi: int, thread: int) -> None:
        """Step simulations ``lo..hi-1`` on this thread's scratch ``MjData`` of each class (a worker thread)."""
        step, forward = mujoco.mj_step, mujoco.mj_forward
        set_state, get_state = mujoco.mj_setState, mujoco.mj_getState
        for i in range(lo, hi):
            g, j = self._groups[self._sim_group[i]], int(self._sim_row[i])
            data, model, state = g.scratch[thread], g.models[j], self._states[self._sim_group[i]][j]
            set_state(model, data, state, _INTEGRATION)
            step(model, data, nstep=g.frame_skip)
            forward(model, data)
            g.read(j, data)
            get_state(model, data, state, _INTEGRATION)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
