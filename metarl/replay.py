"""Per-task replay buffers for off-policy meta-RL (PEARL): one ring buffer per training task, never mixed,
and :func:`episode_transitions`, which turns the shared sampler's episodes into ``(s, a, r, s', done)`` rows.

:class:`MultiTaskReplayBuffer` stores transitions ``(s, a, r, s', done)`` of ``n_tasks`` tasks in
separate ring buffers of ``capacity`` transitions each (arrays ``(n_tasks, capacity, ...)``), so a batch
drawn for task ``i`` holds only task ``i``'s data. Drawing is uniform with replacement within each
task's buffer, from a ``torch.Generator`` (the run's seed fixes every batch). Storage grows (doubling)
as transitions arrive, so a large ``capacity`` costs memory only when it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl.sac import ActionScaler
from metarl.sampler import Episodes
from metarl.tasks import check_positive_int

__all__ = ["MultiTaskReplayBuffer", "TRANSITION_KEYS", "episode_transitions"]

#: the arrays of a transition batch
TRANSITION_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


class MultiTaskReplayBuffer:
    """One ring buffer of transitions per task.

    Args:
        n_tasks: number of tasks (buffers).
        capacity: transitions kept per task; the oldest are overwritten.
        obs_dim, act_dim: sizes of a flat observation and action.
        extra_keys: names of further per-step scalars to keep with each transition (e.g. ``"dense_rewards"``).
    """

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int, extra_keys: Sequence[str] = ()):
        self.n_tasks = check_positive_int("n_tasks", n_tasks)
        self.capacity = check_positive_int("capacity", capacity)
        self.obs_dim, self.act_dim = check_positive_int("obs_dim", obs_dim), check_positive_int("act_dim", act_dim)
        shapes = {"observations": (obs_dim,), "actions": (act_dim,), "rewards": (), "next_observations": (obs_dim,),
                  "terminals": (), **{key: () for key in extra_keys}}
        self.keys = tuple(shapes)
        self._data = {k: torch.zeros((n_tasks, min(capacity, 256), *shape), dtype=torch.float32)
                      for k, shape in shapes.items()}
        self.sizes = np.zeros(n_tasks, dtype=np.int64)
        self._next = np.zeros(n_tasks, dtype=np.int64)

    def __len__(self) -> int:
        """Transitions stored over all tasks."""
        return int(self.sizes.sum())

    def size(self, task: int) -> int:
        """Transitions stored for ``task``."""
        return int(self.sizes[self._check_task(task)])

    def _check_task(self, task: int) -> int:
        if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or not 0 <= task < self.n_tasks:
            raise IndexError(f"task index must be an integer in [0, {self.n_tasks}), got {task!r}")
        return int(task)

    def add(self, task: int, transitions: dict[str, torch.Tensor]) -> None:
        """Append ``n`` transitions of ``task``: a dict with every key of :attr:`keys`, each ``(n, ...)``."""
        task = self._check_task(task)
        missing = [k for k in self.keys if k not in transitions]
        if missing:
            raise KeyError(f"transitions lack {missing}; a buffer entry needs {list(self.keys)}")
        n = int(transitions["rewards"].shape[0])
        for key in self.keys:
            value = torch.as_tensor(transitions[key], dtype=torch.float32)
            expected = (n, *self._data[key].shape[2:])
            if tuple(value.shape) != expected:
                raise ValueError(f"transitions[{key!r}] must have shape {expected}, got {tuple(value.shape)}")
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` survive
            transitions = {k: v[-self.capacity:] for k, v in transitions.items()}
            n = self.capacity
        self._reserve(int(min(self.sizes[task] + n, self.capacity)))
        idx = (self._next[task] + np.arange(n)) % self.capacity
        index = torch.as_tensor(idx)
        for key in self.keys:
            self._data[key][task, index] = torch.as_tensor(transitions[key], dtype=torch.float32)
        self._next[task] = (self._next[task] + n) % self.capacity
        self.sizes[task] = min(self.sizes[task] + n, self.capacity)

    def _reserve(self, rows: int) -> None:
        """Grow the storage (doubling) to hold at least ``rows`` transitions per task."""
        allocated = self._data["rewards"].shape[1]
        if rows <= allocated:
            return
        new = min(max(rows, 2 * allocated), self.capacity)
        for key, data in self._data.items():
            grown = torch.zeros((self.n_tasks, new, *data.shape[2:]), dtype=data.dtype)
            grown[:, :allocated] = data
            self._data[key] = grown

    def clear(self, task: int) -> None:
        """Forget ``task``'s transitions."""
        task = self._check_task(task)
        self.sizes[task] = 0
        self._next[task] = 0

    def sample(self, tasks: Sequence[int], batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions of each task in ``tasks`` (uniform, with replacement), ``(len(tasks), batch, ...)``.

        Raises:
            ValueError: a task's buffer is empty.
        """
        check_positive_int("batch_size", batch_size)
        task_idx = np.asarray([self._check_task(t) for t in tasks], dtype=np.int64)
        sizes = self.sizes[task_idx]
        if (sizes == 0).any():
            raise ValueError(f"the replay buffer of task {int(task_idx[np.argmax(sizes == 0)])} is empty; "
                             "collect data for it before drawing a batch")
        u = torch.rand((len(task_idx), batch_size), generator=generator)
        rows = (u * torch.as_tensor(sizes, dtype=torch.float32)[:, None]).long()
        rows = torch.minimum(rows, torch.as_tensor(sizes - 1)[:, None])
        tasks_t = torch.as_tensor(task_idx)[:, None].expand_as(rows)
        return {key: data[tasks_t, rows] for key, data in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (filled rows only) and ring positions."""
        n = int(self.sizes.max()) if self.n_tasks else 0
        return {"capacity": self.capacity, "sizes": self.sizes.copy(), "next": self._next.copy(),
                "data": {k: v[:, :n].clone() for k, v in self._data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (same task count, capacity and keys)."""
        if int(state["capacity"]) != self.capacity or set(state["data"]) != set(self.keys):
            raise ValueError(f"replay buffer state of capacity {state['capacity']} with {sorted(state['data'])} does "
                             f"not fit a buffer of capacity {self.capacity} with {sorted(self.keys)}")
        sizes = np.asarray(state["sizes"], dtype=np.int64)
        if sizes.shape != (self.n_tasks,):
            raise ValueError(f"replay buffer state has {sizes.shape[0]} tasks, the buffer {self.n_tasks}")
        self._reserve(int(max(sizes.max(initial=0), 1)))
        for key, value in state["data"].items():
            self._data[key].zero_()
            self._data[key][:, :value.shape[1]] = value
        self.sizes = sizes.copy()
        self._next = np.asarray(state["next"], dtype=np.int64).copy()


def episode_transitions(episodes: Episodes, scaler: ActionScaler,
                        critic_rewards: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The transitions of a batch of episodes as ``(tasks, episodes, T, ...)`` tensors, with a ``mask``.

    ``next_observations`` is ``s_{t+1}`` (the episode's final observation at its last step), ``terminals``
    is 1 only at the last step of an episode that terminated (a horizon cut bootstraps), ``actions`` are
    in the policy's ``[-1, 1]`` units.
    """
    obs = episodes.observations.flatten(3)
    n_tasks, n_eps, horizon = obs.shape[:3]
    mask = episodes.mask
    lengths = mask.sum(-1).long()
    last = (lengths - 1).clamp_min(0)
    next_obs = torch.cat([obs[:, :, 1:], obs[:, :, -1:]], dim=2).clone()
    assert episodes.final_observations is not None and episodes.terminated is not None
    final = episodes.final_observations.flatten(2)
    index = last[..., None, None].expand(n_tasks, n_eps, 1, obs.shape[-1])
    next_obs.scatter_(2, index, final[:, :, None])
    terminals = torch.zeros(n_tasks, n_eps, horizon)
    terminals.scatter_(2, last[..., None], episodes.terminated.float()[..., None])
    return {"observations": obs, "actions": scaler.to_unit(episodes.actions), "rewards": episodes.rewards,
            "critic_rewards": episodes.rewards if critic_rewards is None else critic_rewards,
            "next_observations": next_obs, "terminals": terminals * mask, "mask": mask}
