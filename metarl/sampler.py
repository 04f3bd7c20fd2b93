"""Episode sampling: ``episodes_per_task`` episodes for each task of a meta-batch, in one batched pass.

:class:`EpisodeSampler` builds (once) a batched backend for the family — its own NumPy/MuJoCo
fast path when it has one, otherwise one Gymnasium env per simulation — and steps all
``meta_batch_size * episodes_per_task`` simulations together, asking the policy for all their
actions in one call. The result is an :class:`Episodes` batch of ``(tasks, episodes, T, ...)``
tensors with a mask for the steps after each episode ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.batched import BatchedEnv, make_batched_env
from metarl.tasks import check_positive_int, check_rng, check_task_family, draw_tasks, has_task_splits, make_env
from metarl.errors import NonFiniteError

__all__ = ["Episodes", "EpisodeSampler", "ActFn", "Shard"]

#: ``act_fn(observations (tasks, episodes, *obs_shape), generator) -> actions (tasks, episodes, *act_shape)``.
#: It may have ``observe(actions, rewards, info, valid)`` (shown every transition) and a ``backend`` attribute
#: (bound to the backend that runs it, e.g. RL^2's actor reading which simulations are idle).
ActFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Shard:
    """Tasks ``offset ... offset + n - 1`` of a meta-batch of ``total_tasks`` (see :meth:`EpisodeSampler.rollout`)."""

    offset: int
    total_tasks: int


class _ActiveView:
    """A backend's ``active`` flags placed in a whole meta-batch's rows (False elsewhere)."""

    def __init__(self, backend: Any, start: int, total: int):
        self.backend, self.start, self.total = backend, start, total

    @property
    def active(self) -> np.ndarray:
        out = np.zeros(self.total, dtype=bool)
        part = np.asarray(self.backend.active, dtype=bool)
        out[self.start:self.start + len(part)] = part
        return out


class _ShardedActFn:
    """``act_fn`` made for a whole meta-batch, run on one shard's simulations: observations (and what ``observe``
    sees) padded to the whole batch, the shard's actions cut out. The noise drawn is the whole batch's."""

    def __init__(self, act_fn: ActFn, shard: Shard, n_tasks: int, backend: Any):
        self.act_fn, self.shard, self.n_tasks = act_fn, shard, n_tasks
        if shard.offset < 0 or shard.offset + n_tasks > shard.total_tasks:
            raise ValueError(f"shard of {n_tasks} tasks at {shard.offset} does not fit {shard.total_tasks} tasks")
        self.sims_per_task = backend.num_envs // n_tasks
        if hasattr(act_fn, "backend"):
            act_fn.backend = _ActiveView(backend, shard.offset * self.sims_per_task,
                                         shard.total_tasks * self.sims_per_task)
        if hasattr(act_fn, "observe"):
            self.observe = self._observe

    def __call__(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        full = obs.new_zeros((self.shard.total_tasks, *obs.shape[1:]))
        rows = slice(self.shard.offset, self.shard.offset + self.n_tasks)
        full[rows] = obs
        self._last = self.act_fn(full, generator)
        return self._last[rows]

    def _pad(self, x: Any) -> Any:
        x = np.asarray(x)
        if x.ndim == 0 or len(x) != self.n_tasks * self.sims_per_task:
            return x
        out = np.zeros((self.shard.total_tasks * self.sims_per_task, *x.shape[1:]), dtype=x.dtype)
        start = self.shard.offset * self.sims_per_task
        out[start:start + len(x)] = x
        return out

    def _observe(self, actions: np.ndarray, rewards: np.ndarray, info: Mapping[str, Any], valid: np.ndarray) -> None:
        full_actions = self._last.reshape(-1, *self._last.shape[2:]).numpy()
        self.act_fn.observe(full_actions, self._pad(rewards), {k: self._pad(v) for k, v in info.items()},
                            self._pad(valid))


@dataclass
class Episodes:
    """A batch of episodes, ``(tasks, episodes_per_task, T, ...)``.

    Attributes:
        observations: ``s_t``.
        actions: ``a_t`` as sampled (before any clipping by the env).
        rewards: ``r_t`` (0 on masked steps).
        mask: 1.0 while the episode runs, 0.0 after it ended. A backend may also mark steps of a
            running episode as idle with ``info["valid"]`` (a boolean per simulation) from ``step``:
            those get 0.0 too, so the mask can have holes (an RL^2 trial waiting for its next inner
            episode, :class:`metarl.wrappers.RL2TrialBatchedEnv`). Families never do this.
        tasks: the task of each leading index.
        truncated: ``(tasks, episodes)`` whether the episode was cut by the env (e.g. a MuJoCo blow-up)
            rather than terminated or run to the horizon.
        terminated: ``(tasks, episodes)`` whether the episode ended in a terminal state (no value after it).
        final_observations: ``(tasks, episodes, *obs_shape)`` the observation the episode's last step
            returned (``s_{T}``, what an off-policy critic bootstraps from at the horizon).
        infos: per-step ``(tasks, episodes, T)`` values of the ``info`` keys asked for with ``info_keys``
            (0 on masked steps), e.g. SparsePointRobot's ``dense_reward``.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    tasks: list[Any]
    truncated: torch.Tensor
    terminated: torch.Tensor | None = None
    final_observations: torch.Tensor | None = None
    infos: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each episode, ``(tasks, episodes)``."""
        return (self.rewards * self.mask).sum(-1)

    @property
    def num_steps(self) -> int:
        """Environment steps in the batch."""
        return int(self.mask.sum().item())

    def as_batch(self) -> dict[str, torch.Tensor]:
        """The tensors as a dict (a pytree ``vmap`` can split along the task axis)."""
        return {"observations": self.observations, "actions": self.actions, "rewards": self.rewards,
                "mask": self.mask}


class EpisodeSampler:
    """Samples episodes of tasks of one registered family.

    Args:
        env_id: a registered id (``"metarl/Navigation2D-v0"``) or a module-prefixed one
            (``"mypkg.families:MyFamily-v0"``).
        env_kwargs: constructor kwargs for the family (passed to ``gymnasium.make``).
        max_episode_steps: horizon; defaults to the registration's ``max_episode_steps``.
        fast: use the family's batched backend when it has one (``False`` forces the generic path).
    """

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any] | None = None, *,
                 max_episode_steps: int | None = None, fast: bool = True):
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        make_kwargs = dict(self.env_kwargs)
        if max_episode_steps is not None:
            make_kwargs["max_episode_steps"] = check_positive_int("max_episode_steps", max_episode_steps)
        self._make_kwargs = make_kwargs
        self.env = make_env(env_id, **make_kwargs)
        self.family = check_task_family(self.env)
        horizon = max_episode_steps or (self.env.spec.max_episode_steps if self.env.spec else None)
        if horizon is None:
            horizon = getattr(self.family, "horizon", None)
        if horizon is None:
            raise ValueError(
                f"{env_id} has no horizon: register it with max_episode_steps=... or pass max_episode_steps"
            )
        self.horizon = check_positive_int("horizon", horizon)
        self.observation_space: gym.Space = self.env.observation_space
        self.action_space: gym.Space = self.env.action_space
        self.fast = fast
        self._backends: dict[tuple[int, int], BatchedEnv] = {}
        self._env_pool: list[gym.Env] = []  # the generic backends' envs, shared (one backend runs at a time)
        self.last_fps = float("nan")

    def env_fn(self) -> gym.Env:
        """A fresh env of this family with the sampler's settings."""
        return make_env(self.env_id, **self._make_kwargs)

    def sample_tasks(self, n: int, rng: np.random.Generator, split: str | None = None) -> list[Any]:
        """``n`` tasks from the family, drawn with ``rng``: from its fixed ``"train"`` or ``"test"`` set where it
        declares them and ``split`` names one (:func:`metarl.tasks.draw_tasks`), else from its distribution.

        Raises:
            ValueError: the family's ``sample_tasks`` returned another number of tasks.
        """
        tasks = draw_tasks(self.family, n, check_rng(rng), split)
        if len(tasks) != n:
            raise ValueError(f"{self.env_id}: sample_tasks({n}) returned {len(tasks)} tasks; a family must return "
                             "exactly the number asked for")
        return tasks

    @property
    def has_task_splits(self) -> bool:
        """Whether the family declares fixed train and test task sets (meta-training then draws only train
        tasks, the meta-test only test tasks)."""
        return has_task_splits(self.family)

    @property
    def max_simulations(self) -> int | None:
        """The most simulations the family asks to run at once (its ``max_simulations``, for families whose
        envs are large, as Meta-World's); ``None``: no limit. Meta-tests split their tasks to respect it."""
        return getattr(self.family, "max_simulations", None)

    @property
    def success_info_key(self) -> str | None:
        """The step-info entry that flags success, where the family names one (``success_info_key``, e.g.
        Meta-World's ``"success"``); :meth:`sample` then always keeps it in :attr:`Episodes.infos`."""
        return getattr(self.family, "success_info_key", None)

    def episode_success(self, rewards: torch.Tensor, infos: Mapping[str, torch.Tensor] | None = None
                        ) -> np.ndarray | None:
        """Whether each episode reached the family's goal, ``(...)`` from per-step ``(..., T)`` values (masked
        steps 0): where the family names a ``success_info_key``, whether that info entry was set at any step
        (``infos``: the episodes' :attr:`Episodes.infos`, shaped like ``rewards``); where it defines
        ``episode_success(rewards)`` (e.g. SparsePointRobot), from the rewards; else ``None``."""
        key = self.success_info_key
        if key is not None and infos is not None and key in infos:
            return (infos[key] > 0).any(-1).numpy()
        success = getattr(self.family, "episode_success", None)
        if success is None:
            return None
        return np.asarray(success(rewards.detach().numpy()), dtype=bool)

    def backend(self, tasks: Sequence[Any], episodes_per_task: int) -> BatchedEnv:
        """The (cached) batched backend for this many tasks and episodes, set to ``tasks``."""
        key = (len(tasks), episodes_per_task)
        if key not in self._backends:
            self._backends[key] = make_batched_env(self.env_fn, tasks, episodes_per_task, fast=self.fast,
                                                   env_pool=self._env_pool)
        backend = self._backends[key]
        backend.set_tasks(tasks)
        return backend

    def sample(self, act_fn: ActFn, tasks: Sequence[Any], episodes_per_task: int,
               rng: np.random.Generator, *, info_keys: Sequence[str] = ()) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task with ``act_fn``.

        Reset seeds and the action-noise generator are drawn from ``rng``, so the same generator
        state gives the same episodes. An ``act_fn`` with an ``observe(actions, rewards, info, valid)``
        method is shown every transition after the step (``valid``: the simulations that really moved).
        ``info_keys``: numeric per-simulation entries of the backend's step ``info`` to keep in
        :attr:`Episodes.infos` (a key the backend does not return is an error naming it).
        """
        check_positive_int("episodes_per_task", episodes_per_task)
        if len(tasks) == 0:
            raise ValueError("need at least one task to sample")
        rng = check_rng(rng)
        seeds = rng.integers(0, 2**31 - 1, size=len(tasks) * episodes_per_task)
        generator_seed = int(rng.integers(0, 2**62))
        return self.rollout(act_fn, tasks, episodes_per_task, seeds, generator_seed, info_keys=info_keys)

    def rollout(self, act_fn: ActFn, tasks: Sequence[Any], episodes_per_task: int, seeds: np.ndarray,
                generator_seed: int, *, info_keys: Sequence[str] = (), shard: Shard | None = None) -> Episodes:
        """The episodes :meth:`sample` draws, from its reset seeds (one per simulation, task-major) and the seed
        of the action-noise generator.

        ``shard``: these tasks are rows ``shard.offset ...`` of a meta-batch of ``shard.total_tasks`` tasks that
        ``act_fn`` was made for (a remote worker's part, :mod:`metarl.ray_sampler`). ``act_fn`` is then called on
        the whole batch's shape, the other tasks' observations zero, and draws the same noise as for the whole
        batch, so each task's episodes are those of the unsharded run.
        """
        if self.success_info_key is not None and self.success_info_key not in info_keys:
            info_keys = (*info_keys, self.success_info_key)
        backend = self.backend(tasks, episodes_per_task)
        n_tasks, n_eps, horizon = len(tasks), episodes_per_task, self.horizon
        n_sims = n_tasks * n_eps
        act_fn = _ShardedActFn(act_fn, shard, n_tasks, backend) if shard is not None else act_fn
        observe = getattr(act_fn, "observe", None)
        generator = torch.Generator().manual_seed(generator_seed)
        start = time.perf_counter()
        obs = backend.reset(np.asarray(seeds))
        self._check_observations(obs, np.ones(n_sims, dtype=bool), tasks, n_eps, "reset")
        obs_shape = obs.shape[1:]
        observations = torch.zeros((horizon, n_sims, *obs_shape), dtype=torch.float32)
        rewards = torch.zeros((horizon, n_sims), dtype=torch.float32)
        mask = torch.zeros((horizon, n_sims), dtype=torch.float32)
        truncated_any = np.zeros(n_sims, dtype=bool)
        terminated_any = np.zeros(n_sims, dtype=bool)
        final_obs = np.zeros((n_sims, *obs_shape), dtype=np.float32)
        infos = {key: torch.zeros((horizon, n_sims), dtype=torch.float32) for key in info_keys}
        actions_t: torch.Tensor | None = None
        alive = np.ones(n_sims, dtype=bool)
        for t in range(horizon):
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            observations[t] = obs_t
            with torch.no_grad():
                act = act_fn(obs_t.reshape(n_tasks, n_eps, *obs_shape), generator)
            act = act.reshape(n_sims, *act.shape[2:])
            if actions_t is None:
                actions_t = torch.zeros((horizon, *act.shape), dtype=act.dtype)
            actions_t[t] = act
            if act.is_floating_point() and not bool(torch.isfinite(act).all()):
                bad = int(torch.nonzero(~torch.isfinite(act.reshape(n_sims, -1)).all(1))[0])
                raise NonFiniteError(
                    f"non-finite action from the policy at step {t} of task {tasks[bad // n_eps]!r}; "
                    "the policy parameters diverged (lower the inner/outer step size)"
                )
            obs, reward, terminated, truncated, info = backend.step(act.numpy())
            valid = alive & np.asarray(info["valid"], dtype=bool) if "valid" in info else alive
            if observe is not None:  # an act function that learns from its transitions (e.g. a classic baseline)
                observe(act.numpy(), np.asarray(reward), info, valid)
            if not np.all(np.isfinite(reward[valid])):
                bad = int(np.flatnonzero(~np.isfinite(reward) & valid)[0])
                raise NonFiniteError(
                    f"non-finite reward from {self.env_id} at step {t} of task {tasks[bad // n_eps]!r}"
                )
            alive_next = valid & ~np.asarray(terminated, dtype=bool) & ~np.asarray(truncated, dtype=bool)
            self._check_observations(obs, alive_next, tasks, n_eps, f"step {t}")
            mask[t] = torch.as_tensor(valid, dtype=torch.float32)
            rewards[t] = torch.as_tensor(np.where(valid, reward, 0.0), dtype=torch.float32)
            truncated_any |= alive & np.asarray(truncated, dtype=bool)
            terminated_any |= valid & np.asarray(terminated, dtype=bool)
            final_obs[valid] = np.asarray(obs)[valid]
            for key, values in infos.items():
                if key not in info:
                    raise KeyError(f"{self.env_id}'s batched step returns no info[{key!r}]; it returns "
                                   f"{sorted(info)} (info_keys names the per-step values to keep)")
                values[t] = torch.as_tensor(np.where(valid, np.asarray(info[key], dtype=np.float64), 0.0),
                                            dtype=torch.float32)
            alive = alive & ~np.asarray(terminated, dtype=bool) & ~np.asarray(truncated, dtype=bool)
            if not alive.any():
                break
        elapsed = time.perf_counter() - start
        assert actions_t is not None
        steps = float(mask.sum())
        self.last_fps = steps / elapsed if elapsed > 0 else float("nan")

        def to_tasks_first(x: torch.Tensor) -> torch.Tensor:
            x = x.transpose(0, 1)  # (sims, T, ...)
            # contiguous: float reductions over these tensors then add in the same order whether they were made
            # here or arrived from a remote worker (a strided view and its copy can round differently)
            return x.reshape(n_tasks, n_eps, *x.shape[1:]).contiguous()

        return Episodes(
            observations=to_tasks_first(observations),
            actions=to_tasks_first(actions_t),
            rewards=to_tasks_first(rewards),
            mask=to_tasks_first(mask),
            tasks=list(tasks),
            truncated=torch.as_tensor(truncated_any).reshape(n_tasks, n_eps),
            terminated=torch.as_tensor(terminated_any).reshape(n_tasks, n_eps),
            final_observations=torch.as_tensor(final_obs).reshape(n_tasks, n_eps, *obs_shape),
            infos={key: to_tasks_first(values) for key, values in infos.items()},
        )

    def _check_observations(self, obs: np.ndarray, used: np.ndarray, tasks: Sequence[Any], n_eps: int,
                            when: str) -> None:
        """Raise naming the family if an observation the policy will read is not finite."""
        if np.issubdtype(np.asarray(obs).dtype, np.floating):
            bad = ~np.all(np.isfinite(np.asarray(obs).reshape(len(used), -1)), axis=1) & used
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise NonFiniteError(f"non-finite observation from {self.env_id} at {when} of task "
                                     f"{tasks[i // n_eps]!r}: the family returned it (check its step/reset), "
                                     "before any policy acted on it")

    def close(self) -> None:
        """Close the envs."""
        for backend in self._backends.values():
            backend.close()
        for env in self._env_pool:
            env.close()
        self.env.close()
