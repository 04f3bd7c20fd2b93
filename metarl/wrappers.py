"""RL^2 trials: ``n`` episodes of one task, seen by a recurrent policy as one meta-episode.

In RL^2 (Duan et al. 2016, Wang et al. 2016) a *trial* is ``episodes_per_trial`` consecutive
episodes of the same task. The policy's recurrent state runs through the whole trial (it is
reset only between trials), so what it learned in one episode carries into the next, and its
input at step ``t`` is

    ``[ s_t , a_{t-1} , r_{t-1} , d_{t-1} ]``

the observation, the previous action (one-hot for ``Discrete`` actions, clipped to the bounds for
``Box`` actions), the previous reward and the episode-done flag (1.0 when the previous step ended
an inner episode, so ``s_t`` is the first observation of the next one). At the first step of a
trial the previous action, reward and flag are zero. The trial is the meta-episode: it
terminates after its last inner episode ends, and its return (the sum over all its episodes) is
what the meta-policy maximises.

Two forms of the same thing, for any registered family (the user's own and the MuJoCo ones too):

* :class:`RL2TrialWrapper`, a ``gymnasium.Wrapper`` around one env (use it with any single-env
  code; it passes Gymnasium's and Stable-Baselines3's env checkers). With ``sample_task_on_reset=True`` it draws a
  new task from the family at each reset, so every trial is a fresh task.
* :class:`RL2TrialBatchedEnv`, a :class:`~metarl.batched.BatchedEnv` around a family's batched
  backend, and :class:`RL2TrialSampler`, the :class:`~metarl.sampler.EpisodeSampler` whose
  "episodes" are whole trials (what ``agents/rl2.py`` trains on).

A batched backend resets all its simulations together, so an inner episode occupies a slot of
``horizon`` steps; when it ends early (a terminal state) the simulation is *idle* until the
slot is over. Idle steps are reported with ``info["valid"] = False`` (the sampler masks them)
and :attr:`RL2TrialBatchedEnv.active` tells the policy not to advance its recurrent state on
them, so over its valid steps a batched trial is exactly the sequence :class:`RL2TrialWrapper`
produces for the same seed and actions.

Seeds: a trial reset with seed ``s`` resets its ``j``-th inner episode with
``episode_seeds(s, n)[j]`` in both forms (and, for :class:`RL2TrialWrapper` drawing tasks, seeds
its task generator from ``s`` as well, so ``reset(seed=s)`` fixes the whole trial).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from metarl.batched import BatchedEnv, StepResult, make_batched_env
from metarl.sampler import EpisodeSampler
from metarl.tasks import check_positive_int, check_task_family

__all__ = ["RL2Inputs", "RL2TrialWrapper", "RL2TrialBatchedEnv", "RL2TrialSampler", "episode_seeds"]


def episode_seeds(trial_seed: int, episodes_per_trial: int) -> np.ndarray:
    """The reset seeds of a trial's inner episodes, derived from the trial's seed."""
    state = np.random.SeedSequence(int(trial_seed)).generate_state(episodes_per_trial, dtype=np.uint32)
    return state.astype(np.int64)


@dataclass(frozen=True)
class RL2Inputs:
    """Layout of the RL^2 policy input ``[obs, previous action, previous reward, done flag]``.

    Attributes:
        observation_space: the family's flat ``Box`` observation space.
        action_space: the family's ``Discrete`` or flat ``Box`` action space.
    """

    observation_space: spaces.Box
    action_space: spaces.Space

    @classmethod
    def for_spaces(cls, observation_space: spaces.Space, action_space: spaces.Space) -> "RL2Inputs":
        """Check the spaces and build the layout."""
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"RL^2 inputs need a flat Box observation space, got {observation_space}; wrap the "
                             "env in gymnasium.wrappers.FlattenObservation first")
        if not (isinstance(action_space, spaces.Discrete)
                or (isinstance(action_space, spaces.Box) and len(action_space.shape) == 1)):
            raise ValueError(f"RL^2 inputs need a Discrete or flat Box action space, got {action_space}")
        return cls(observation_space, action_space)

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    @property
    def action_dim(self) -> int:
        """Width of the encoded previous action (arms for ``Discrete``, the vector size for ``Box``)."""
        if isinstance(self.action_space, spaces.Discrete):
            return int(self.action_space.n)
        return int(self.action_space.shape[0])

    @property
    def size(self) -> int:
        """Width of the whole input."""
        return self.obs_dim + self.action_dim + 2

    @property
    def obs_slice(self) -> slice:
        return slice(0, self.obs_dim)

    @property
    def action_slice(self) -> slice:
        return slice(self.obs_dim, self.obs_dim + self.action_dim)

    @property
    def reward_index(self) -> int:
        return self.obs_dim + self.action_dim

    @property
    def done_index(self) -> int:
        return self.obs_dim + self.action_dim + 1

    def input_space(self) -> spaces.Box:
        """The ``Box`` of composed inputs."""
        if isinstance(self.action_space, spaces.Discrete):
            act_low, act_high = np.zeros(self.action_dim), np.ones(self.action_dim)
        else:
            act_low, act_high = self.action_space.low, self.action_space.high
        low = np.concatenate([self.observation_space.low, act_low, [-np.inf, 0.0]]).astype(np.float32)
        high = np.concatenate([self.observation_space.high, act_high, [np.inf, 1.0]]).astype(np.float32)
        return spaces.Box(low, high, dtype=np.float32)

    def encode_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions ``(B,)`` or ``(B, act_dim)`` -> ``(B, action_dim)`` float32 (one-hot or clipped)."""
        if isinstance(self.action_space, spaces.Discrete):
            index = np.asarray(actions).astype(np.int64).reshape(-1) - int(self.action_space.start)
            if np.any((index < 0) | (index >= self.action_dim)):
                raise ValueError(f"actions {np.asarray(actions).tolist()} are outside {self.action_space}")
            return np.eye(self.action_dim, dtype=np.float32)[index]
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, self.action_dim)
        return np.clip(actions, self.action_space.low, self.action_space.high).astype(np.float32)

    def compose(self, obs: np.ndarray, prev_actions: np.ndarray, prev_rewards: np.ndarray,
                dones: np.ndarray) -> np.ndarray:
        """Batched inputs ``(B, size)`` from obs ``(B, obs_dim)``, encoded actions, rewards ``(B,)``, flags ``(B,)``."""
        obs = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        return np.concatenate([obs, np.asarray(prev_actions, dtype=np.float32).reshape(len(obs), self.action_dim),
                               np.asarray(prev_rewards, dtype=np.float32).reshape(-1, 1),
                               np.asarray(dones, dtype=np.float32).reshape(-1, 1)], axis=1)


def _check_episodes(episodes_per_trial: int) -> int:
    return check_positive_int("episodes_per_trial", episodes_per_trial)


class RL2TrialWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One env as RL^2 trials: an episode of this wrapper is ``episodes_per_trial`` inner episodes.

    Observations are :class:`RL2Inputs` compositions. When an inner episode ends (terminated or
    truncated) the inner env is reset in the same ``step`` and its first observation returned
    with the done flag set; after the last inner episode the wrapper returns ``terminated=True``.
    ``info`` carries ``episode_index`` (the inner episode the step belonged to) and, on the step
    that ended an inner episode, ``episode_terminated`` / ``episode_truncated``.

    Args:
        env: an env with a flat ``Box`` observation space and a ``Discrete`` or flat ``Box`` action space.
        episodes_per_trial: inner episodes per trial.
        sample_task_on_reset: every ``reset`` draws a new task from the family (whose unwrapped env
            must implement the task protocol) with the wrapper's task generator, seeded by
            ``reset(seed=...)`` like Gymnasium's ``np_random``; otherwise the task set on the env stays.
        max_episode_steps: truncate inner episodes after this many steps (default: rely on the
            env's own time limit, which an env from ``gymnasium.make`` of a metarl family has).
    """

    def __init__(self, env: gym.Env, episodes_per_trial: int, *, sample_task_on_reset: bool = False,
                 max_episode_steps: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, episodes_per_trial=episodes_per_trial,
                                                 sample_task_on_reset=sample_task_on_reset,
                                                 max_episode_steps=max_episode_steps)
        gym.Wrapper.__init__(self, env)
        self.episodes_per_trial = _check_episodes(episodes_per_trial)
        self.inputs = RL2Inputs.for_spaces(env.observation_space, env.action_space)
        self.observation_space = self.inputs.input_space()
        self.sample_task_on_reset = bool(sample_task_on_reset)
        if self.sample_task_on_reset:
            check_task_family(env)
        self._task_rng: np.random.Generator | None = None
        self.max_episode_steps = (check_positive_int("max_episode_steps", max_episode_steps)
                                  if max_episode_steps is not None else None)
        self._seeds: np.ndarray | None = None
        self._episode = self.episodes_per_trial  # no trial running until reset
        self._steps = 0

    def _reset_inner(self, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        seed = None if self._seeds is None else int(self._seeds[self._episode])
        self._steps = 0
        return self.env.reset(seed=seed, options=options)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._seeds = episode_seeds(seed, self.episodes_per_trial) if seed is not None else None
        if self.sample_task_on_reset:
            if seed is not None:
                self._task_rng = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(1)[0])
            elif self._task_rng is None:  # unseeded, as Gymnasium's np_random: fresh OS entropy
                self._task_rng = np.random.default_rng()
            family = check_task_family(self.env)
            family.set_task(family.sample_tasks(1, self._task_rng)[0])
        self._episode = 0
        obs, info = self._reset_inner(options)
        zeros = np.zeros(1)
        composed = self.inputs.compose(obs[None], np.zeros((1, self.inputs.action_dim)), zeros, zeros)[0]
        return composed, {**info, "episode_index": 0}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._episode >= self.episodes_per_trial:
            raise RuntimeError("the trial is over; call reset() to start the next one")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if self.max_episode_steps is not None and self._steps >= self.max_episode_steps:
            truncated = True
        info = {**info, "episode_index": self._episode}
        episode_over = bool(terminated or truncated)
        trial_over = False
        if episode_over:
            info.update(episode_terminated=bool(terminated), episode_truncated=bool(truncated))
            self._episode += 1
            if self._episode < self.episodes_per_trial:
                obs, _ = self._reset_inner()
            else:
                trial_over = True
        composed = self.inputs.compose(np.asarray(obs)[None], self.inputs.encode_actions(np.asarray(action)[None]),
                                       np.array([float(reward)]), np.array([float(episode_over)]))[0]
        return composed, reward, trial_over, False, info


class RL2TrialBatchedEnv(BatchedEnv):
    """A batched backend as RL^2 trials of ``episodes_per_trial`` episodes of ``horizon`` steps each.

    One call to ``reset`` starts a trial in every simulation; the trial lasts
    ``episodes_per_trial * horizon`` steps. ``step`` returns ``info["valid"]`` (whether the step
    was a real step of an inner episode) and terminates a simulation's trial when its last inner
    episode ends. Read :attr:`active` before ``step`` to know which simulations the next step moves.

    Args:
        env: the family's batched backend (one simulation per trial).
        episodes_per_trial: inner episodes per trial.
        horizon: steps per inner episode at most (the family's ``max_episode_steps``).
    """

    def __init__(self, env: BatchedEnv, episodes_per_trial: int, horizon: int):
        self.env = env
        self.episodes_per_trial = _check_episodes(episodes_per_trial)
        self.horizon = check_positive_int("horizon", horizon)
        self.inputs = RL2Inputs.for_spaces(env.single_observation_space, env.single_action_space)
        self.single_observation_space = self.inputs.input_space()
        self.single_action_space = env.single_action_space
        n = env.num_envs
        self._seeds = np.zeros((n, self.episodes_per_trial), dtype=np.int64)
        self._alive = np.zeros(n, dtype=bool)  # the current inner episode still runs
        self._trial_over = np.ones(n, dtype=bool)
        self._episode = self.episodes_per_trial
        self._t = 0
        self._last_obs = np.zeros((n, self.inputs.obs_dim), dtype=np.float32)
        self._prev_actions = np.zeros((n, self.inputs.action_dim), dtype=np.float32)
        self._prev_rewards = np.zeros(n)

    @property
    def tasks(self) -> list[Any]:  # type: ignore[override]
        return self.env.tasks

    @property
    def episodes_per_task(self) -> int:  # type: ignore[override]
        return self.env.episodes_per_task

    @property
    def active(self) -> np.ndarray:
        """``(B,)`` whether the next ``step`` is a real environment step of each simulation."""
        return self._alive & ~self._trial_over

    @property
    def episode_index(self) -> int:
        """Index of the running inner episode (``episodes_per_trial`` once the trial is over)."""
        return self._episode

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        self.env.set_tasks(tasks)

    def reset(self, seeds: Sequence[int] | np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"need {self.num_envs} seeds, got shape {seeds.shape}")
        self._seeds = np.stack([episode_seeds(s, self.episodes_per_trial) for s in seeds])
        self._episode, self._t = 0, 0
        self._alive[:] = True
        self._trial_over[:] = False
        self._last_obs = np.asarray(self.env.reset(self._seeds[:, 0]), dtype=np.float32).reshape(self.num_envs, -1)
        self._prev_actions[:] = 0.0
        self._prev_rewards[:] = 0.0
        return self.inputs.compose(self._last_obs, self._prev_actions, self._prev_rewards, np.zeros(self.num_envs))

    def step(self, actions: np.ndarray) -> StepResult:
        if self._episode >= self.episodes_per_trial:
            raise RuntimeError("the trials are over; call reset(seeds) to start the next ones")
        valid = self.active
        obs, reward, terminated, truncated, inner_info = self.env.step(actions)
        obs = np.asarray(obs, dtype=np.float32).reshape(self.num_envs, -1)
        next_observation = obs.copy()  # the transition's own next state, before a new inner episode resets it
        reward = np.where(valid, np.asarray(reward, dtype=np.float64), 0.0)
        self._t += 1
        slot_over = self._t >= self.horizon
        ended = valid & (np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool) | slot_over)
        self._last_obs[valid] = obs[valid]
        self._prev_actions[valid] = self.inputs.encode_actions(np.asarray(actions)[valid])
        self._prev_rewards[valid] = reward[valid]
        self._alive &= ~ended
        last_episode = self._episode == self.episodes_per_trial - 1
        trial_ends = ended & last_episode
        self._trial_over |= trial_ends
        if slot_over:
            self._episode += 1
            if self._episode < self.episodes_per_trial:
                self._last_obs = np.asarray(self.env.reset(self._seeds[:, self._episode]),
                                            dtype=np.float32).reshape(self.num_envs, -1)
                self._alive[:] = True
                self._t = 0
        # the flag says "the last valid step ended an episode": true for everyone at a slot boundary
        dones = np.full(self.num_envs, 1.0) if slot_over else ended.astype(np.float64)
        out = self.inputs.compose(self._last_obs, self._prev_actions, self._prev_rewards, dones)
        no = np.zeros(self.num_envs, dtype=bool)
        info = {key: np.where(valid, np.asarray(value, dtype=np.float64), 0.0) for key, value in inner_info.items()
                if np.ndim(value) == 1 and len(value) == self.num_envs and np.issubdtype(np.asarray(value).dtype, np.number)}
        return out, reward, trial_ends, no, {**info, "valid": valid, "episode_ended": ended,
                                             "observation": next_observation}

    def close(self) -> None:
        self.env.close()


class RL2TrialSampler(EpisodeSampler):
    """:class:`~metarl.sampler.EpisodeSampler` whose episodes are RL^2 trials of ``episodes_per_trial`` episodes.

    ``sample(act_fn, tasks, trials_per_task, rng)`` returns ``(tasks, trials, episodes_per_trial *
    episode_horizon, ...)`` tensors of composed inputs; the mask is 0 after a trial ended and on
    idle steps. ``act_fn`` should read :meth:`backend`'s :attr:`RL2TrialBatchedEnv.active` to
    keep its recurrent state still on idle steps.

    Args:
        env_id: the family id.
        env_kwargs: the family's constructor kwargs.
        episodes_per_trial: inner episodes per trial.
        max_episode_steps: inner-episode horizon (default: the family's).
        fast: use the family's batched backend when it has one.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, *, episodes_per_trial: int,
                 max_episode_steps: int | None = None, fast: bool = True):
        super().__init__(env_id, env_kwargs, max_episode_steps=max_episode_steps, fast=fast)
        self.episodes_per_trial = _check_episodes(episodes_per_trial)
        self.episode_horizon = self.horizon
        self.horizon = self.episodes_per_trial * self.episode_horizon
        self.inputs = RL2Inputs.for_spaces(self.env.observation_space, self.env.action_space)
        self.observation_space = self.inputs.input_space()

    def backend(self, tasks: Sequence[Any], episodes_per_task: int) -> RL2TrialBatchedEnv:
        """The (cached) trial backend for this many tasks and trials per task, set to ``tasks``."""
        key = (len(tasks), episodes_per_task)
        if key not in self._backends:
            inner = make_batched_env(self.env_fn, tasks, episodes_per_task, fast=self.fast, env_pool=self._env_pool)
            self._backends[key] = RL2TrialBatchedEnv(inner, self.episodes_per_trial, self.episode_horizon)
        backend = self._backends[key]
        backend.set_tasks(tasks)
        assert isinstance(backend, RL2TrialBatchedEnv)
        return backend

    def trial_wrapper(self, sample_task_on_reset: bool = True) -> RL2TrialWrapper:
        """A single-env :class:`RL2TrialWrapper` with this sampler's family, settings and trial length."""
        return RL2TrialWrapper(self.env_fn(), self.episodes_per_trial, sample_task_on_reset=sample_task_on_reset,
                               max_episode_steps=self.episode_horizon)

    def episode_returns_by_index(self, rewards: torch.Tensor) -> torch.Tensor:
        """Rewards ``(..., episodes_per_trial * horizon)`` -> inner-episode returns ``(..., episodes_per_trial)``."""
        return rewards.reshape(*rewards.shape[:-1], self.episodes_per_trial, self.episode_horizon).sum(-1)
