"""A Gymnasium vector env over a family's batched backend: ``gymnasium.make_vec(id, num_envs=N)``.

    import gymnasium as gym, metarl
    envs = gym.make_vec("metarl/HalfCheetahVel-v0", num_envs=8, vectorization_mode="vector_entry_point")
    envs.set_task(envs.unwrapped.sample_tasks(8, np.random.default_rng(0)))   # one task per sub-env
    obs, info = envs.reset(seed=0)

Every metarl family registers this as its ``vector_entry_point``, so ``make_vec`` (and any library that
takes a Gymnasium ``VectorEnv``) steps all sub-envs through the family's fast path (the MuJoCo thread
pool, the NumPy point masses) instead of N separate envs. Each sub-env runs its own task
(``set_task`` takes a list, one per sub-env; ``task=`` at construction one task for all or a list).
Sub-env ``i`` steps exactly as ``gymnasium.make(id)`` with its task, reset with the same seed, does.
Episodes end at the family's horizon (truncated) or when it terminates; the sub-env resets on its
next step (Gymnasium's default ``NEXT_STEP`` autoreset), or on the same step with
``autoreset_mode="same_step"`` (the final observation in ``info["final_obs"]``).

Stable-Baselines3 takes its own ``VecEnv`` class: :func:`sb3_vec_env` gives one on the same backend
(``PPO("MlpPolicy", metarl.vector.sb3_vec_env("metarl/HalfCheetahVel-v0", 8))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = ["FamilyVectorEnv", "vector_entry_point", "sb3_vec_env"]


class FamilyVectorEnv(VectorEnv):
    """``num_envs`` sub-envs of family ``env_id`` stepped together on its batched backend.

    Args:
        env_id: the registered family.
        num_envs: sub-envs.
        max_episode_steps: horizon (default: the registration's).
        task: a task for every sub-env, or a list of one per sub-env (default: the family's initial task).
        autoreset_mode: ``"next_step"`` (Gymnasium's default) or ``"same_step"``.
        **kwargs: the family's constructor kwargs.
    """

    def __init__(self, env_id: str, num_envs: int = 1, max_episode_steps: int | None = None, task: Any = None,
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP, **kwargs: Any):
        from metarl.batched import make_batched_env
        from metarl.tasks import check_positive_int, check_task_family, make_env

        self.env_id = env_id
        self.num_envs = check_positive_int("num_envs", num_envs)
        modes = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}
        mode = modes.get(autoreset_mode, autoreset_mode) if isinstance(autoreset_mode, str) else autoreset_mode
        if mode not in modes.values():
            raise ValueError(f"autoreset_mode must be 'next_step' or 'same_step' (or Gymnasium's AutoresetMode), "
                             f"got {autoreset_mode!r}")
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self._make_kwargs = dict(kwargs)
        self._env = make_env(env_id, **kwargs)
        self._family = check_task_family(self._env)
        horizon = max_episode_steps or (self._env.spec.max_episode_steps if self._env.spec else None)
        self.max_episode_steps = None if horizon is None else check_positive_int("max_episode_steps", horizon)
        self.single_observation_space = self._env.observation_space
        self.single_action_space = self._env.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        tasks = self._task_list(self._family.get_task() if task is None else task)
        self._backend = make_batched_env(lambda: make_env(env_id, **self._make_kwargs), tasks, 1)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._seed_rng = np.random.default_rng()
        self._started = False

    def _task_list(self, task: Any) -> list[Any]:
        many = isinstance(task, (list, tuple)) and not (hasattr(task, "family") and hasattr(task, "params"))
        tasks = list(task) if many else [task] * self.num_envs
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_task needs one task per sub-env ({self.num_envs}), got {len(tasks)}")
        as_task = getattr(self._family, "as_task", lambda t: t)
        out = []
        for t in tasks:
            t = as_task(t)
            self._family.set_task(t)  # validates it, naming the problem
            out.append(t)
        return out

    # ----- the task protocol, per sub-env ----------------------------------------------------------------
    def set_task(self, tasks: Any) -> None:
        """Run ``tasks`` (one per sub-env, or one for all) from the next ``reset`` on."""
        self._backend.set_tasks(self._task_list(tasks))
        self._started = False

    def get_task(self) -> list[Any]:
        """The task of each sub-env."""
        return list(self._backend.tasks)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """``n`` tasks of the family, drawn with ``rng``."""
        return list(self._family.sample_tasks(n, rng))

    # ----- the VectorEnv API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seeds = self._seed_rng.integers(0, 2**31 - 1, size=self.num_envs)
        elif isinstance(seed, (int, np.integer)):
            seeds = np.arange(self.num_envs) + int(seed)
            self._seed_rng = np.random.default_rng(int(seed))
        else:
            seeds = np.asarray(seed, dtype=np.int64)
            if seeds.shape != (self.num_envs,):
                raise ValueError(f"reset(seed=...) needs one seed per sub-env ({self.num_envs}), got {len(seeds)}")
        obs = self._backend.reset(seeds)
        self._steps[:] = 0
        self._autoreset[:] = False
        self._started = True
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step() (and after set_task)")
        actions = np.asarray(actions)
        if self._autoreset.all():  # every episode ended on the last step: a whole new batch
            obs, _ = self.reset(seed=self._seed_rng.integers(0, 2**31 - 1, size=self.num_envs))
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs), zeros, zeros.copy(), {}
        obs, reward, terminated, truncated, info = self._backend.step(actions)
        reward = np.asarray(reward, dtype=np.float64).copy()
        terminated = np.asarray(terminated, dtype=bool).copy()
        truncated = np.asarray(truncated, dtype=bool).copy()
        self._steps += 1
        if self.max_episode_steps is not None:
            truncated |= self._steps >= self.max_episode_steps
        restart = np.flatnonzero(self._autoreset)
        if restart.size:  # NEXT_STEP autoreset: these sub-envs start a new episode instead of stepping
            obs = self._backend.reset_some(restart, self._seed_rng.integers(0, 2**31 - 1, size=restart.size))
            reward[restart], terminated[restart], truncated[restart] = 0.0, False, False
            self._steps[restart] = 0
        info = {k: np.asarray(v) for k, v in info.items() if np.ndim(v) == 1 and len(v) == self.num_envs}
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            obs = np.asarray(obs)
            final = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(ended):
                final[i] = obs[i].copy()
            info["final_obs"], info["_final_obs"] = final, ended.copy()
            seeds = self._seed_rng.integers(0, 2**31 - 1, size=int(ended.sum()))
            obs = (self._backend.reset(seeds) if ended.all() else
                   self._backend.reset_some(np.flatnonzero(ended), seeds))
            self._steps[ended] = 0
            return np.asarray(obs), reward, terminated, truncated, info
        self._autoreset = ended
        return np.asarray(obs), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self._backend.close()
        self._env.close()


def sb3_vec_env(env_id: str, num_envs: int = 1, *, task: Any = None, **kwargs: Any) -> Any:
    """A Stable-Baselines3 ``VecEnv`` of ``num_envs`` sub-envs of ``env_id`` on its batched backend (SB3's reset
    on the same step, the final observation in ``infos[i]["terminal_observation"]``, ``TimeLimit.truncated``)."""
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    class FamilySB3VecEnv(VecEnv):
        def __init__(self) -> None:
            self.venv = FamilyVectorEnv(env_id, num_envs, task=task, autoreset_mode="same_step", **kwargs)
            super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
            self._actions: np.ndarray | None = None

        def reset(self) -> np.ndarray:
            seeds = None if any(s is None for s in self._seeds) else [int(s) for s in self._seeds]
            obs, _ = self.venv.reset(seed=seeds)
            self._reset_seeds()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
            obs, reward, terminated, truncated, info = self.venv.step(self._actions)
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(terminated | truncated):
                infos[i]["terminal_observation"] = info["final_obs"][i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            return obs, reward.astype(np.float32), terminated | truncated, infos

        def close(self) -> None:
            self.venv.close()

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(self.venv, attr_name) for _ in self._get_indices(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            setattr(self.venv, attr_name, value)

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
            return [getattr(self.venv, method_name)(*args, **method_kwargs)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False for _ in self._get_indices(indices)]

        def set_task(self, tasks: Any) -> None:
            """One task per sub-env (or one for all), from the next reset on."""
            self.venv.set_task(tasks)

        def get_task(self) -> list[Any]:
            """The task of each sub-env."""
            return self.venv.get_task()

    return FamilySB3VecEnv()


def vector_entry_point(env_id: str) -> Any:
    """The ``vector_entry_point`` of family ``env_id`` (``make_vec`` calls it with ``num_envs`` and kwargs)."""

    def make(num_envs: int = 1, **kwargs: Any) -> FamilyVectorEnv:
        return FamilyVectorEnv(env_id, num_envs=num_envs, **kwargs)

    return make
