"""Trained meta-policies in a user's own code: load a run, adapt to a task, act.

    import gymnasium as gym, metarl

    policy = metarl.load_policy("runs/nav")                    # any meta-RL run: MAML, RL^2, PEARL
    env = gym.make("metarl/Navigation2D-v0", task={"goal": (0.3, -0.2)})
    adapted = policy.adapt(env, episodes=20, seed=0)           # K episodes on the env's current task
    obs, _ = env.reset(seed=1)
    action = adapted.act(obs)                                  # deterministic; act(obs, sample=True) samples

What ``adapt`` does is the algorithm's own adaptation, as in its meta-test: MAML runs its inner
step(s) on the K episodes (``steps=`` more steps collect K fresh episodes each); RL^2 runs the K
episodes as the start of a trial and keeps the GRU state, so the adapted policy continues the trial;
PEARL infers the posterior over ``z`` from the K episodes' transitions (the first episode acts with
``z`` from the prior, as in its meta-test) and draws ``z`` from it at each :meth:`AdaptedPolicy.reset`.

The episodes run on the env given, step by step, so any env with the run's observation and action
spaces works (a family of metarl's, a wrapped one, or one of the user's). In a loop of one's own,
call :meth:`AdaptedPolicy.reset` at each episode's start and :meth:`AdaptedPolicy.observe` after each
step (RL^2 needs the reward; for MAML and PEARL it does nothing), or let
:meth:`AdaptedPolicy.run_episode` do both.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.meta_rl import MetaRLAlgorithm, check_spaces
from metarl.registry import SavedRun, load
from metarl.sampler import Episodes

__all__ = ["load_policy", "MetaPolicy", "AdaptedPolicy", "EpisodeRecord", "check_spaces", "records_to_episodes"]


@dataclass
class EpisodeRecord:
    """One episode run step by step on an env.

    Attributes:
        observations: ``s_0 .. s_{T-1}``, ``(T, *obs_shape)``.
        actions: ``(T, *act_shape)`` as given to the env.
        rewards: ``(T,)``.
        terminated / truncated: how it ended.
        final_observation: ``s_T``.
        frames: ``env.render()`` after each reset and step, when asked for.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool
    final_observation: np.ndarray
    frames: list[Any] = field(default_factory=list)

    @property
    def episode_return(self) -> float:
        """The undiscounted return."""
        return float(self.rewards.sum())


def _env_horizon(env: gym.Env, default: int) -> int:
    spec = getattr(env, "spec", None)
    return int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else default


class AdaptedPolicy(abc.ABC):
    """A meta-policy after adaptation to one task: acts on single observations."""

    def __init__(self, policy: "MetaPolicy", generator: torch.Generator):
        self.policy = policy
        self.generator = generator

    def observation(self, obs: Any) -> np.ndarray:
        """``obs`` as an array (its own dtype) of the run's observation shape (for :meth:`act`).

        Raises:
            ValueError: an observation of another shape, or not numbers.
        """
        expected = self.policy.observation_space.shape
        array = np.asarray(obs)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"an observation must be numbers of shape {expected}, got {obs!r:.80}")
        if array.shape != expected:
            raise ValueError(f"this policy takes observations of shape {expected}, got shape {array.shape}: one "
                             "observation of the env it was trained on (act() takes one, not a batch)")
        return array

    def reset(self) -> None:
        """Call at the start of each episode (RL^2 marks the episode boundary, PEARL draws ``z``)."""

    @abc.abstractmethod
    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        """The action for ``obs``: the most likely one, or a sample with ``sample=True``."""

    def observe(self, reward: float, terminated: bool = False, truncated: bool = False) -> None:
        """Show the step's outcome after ``env.step`` (RL^2's next input carries it; others ignore it)."""

    def run_episode(self, env: gym.Env, *, sample: bool = False, seed: int | None = None,
                    render: bool = False, max_steps: int | None = None) -> EpisodeRecord:
        """Run one episode on ``env`` (reset with ``seed``), acting and observing; ``render``: keep frames."""
        return _run_episode(env, self, sample=sample, seed=seed, render=render,
                            max_steps=max_steps or _env_horizon(env, self.policy.horizon))


def _run_episode(env: gym.Env, actor: AdaptedPolicy, *, sample: bool, seed: int | None, render: bool,
                 max_steps: int) -> EpisodeRecord:
    actor.reset()
    obs, _ = env.reset(seed=seed)
    frames = [env.render()] if render else []
    observations, actions, rewards = [], [], []
    terminated = truncated = False
    for _ in range(max_steps):
        action = actor.act(obs, sample=sample)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        actor.observe(float(reward), bool(terminated), bool(truncated))
        observations.append(np.asarray(obs, dtype=np.float32))
        actions.append(np.asarray(action))
        rewards.append(float(reward))
        obs = next_obs
        if render:
            frames.append(env.render())
        if terminated or truncated:
            break
    else:
        truncated = True
    return EpisodeRecord(np.stack(observations), np.stack(actions), np.asarray(rewards, dtype=np.float64),
                         bool(terminated), bool(truncated), np.asarray(obs, dtype=np.float32), frames)


def records_to_episodes(records: Sequence[EpisodeRecord]) -> Episodes:
    """Episodes of one task (``(1, K, T, ...)``, padded to the longest and masked) from step-by-step records."""
    horizon = max(len(r.rewards) for r in records)
    k = len(records)

    def pad(arrays: list[np.ndarray]) -> torch.Tensor:
        first = np.asarray(arrays[0])
        out = np.zeros((k, horizon, *first.shape[1:]), dtype=first.dtype)
        for i, a in enumerate(arrays):
            out[i, :len(a)] = a
        return torch.as_tensor(out)[None]

    mask = torch.zeros(1, k, horizon)
    for i, r in enumerate(records):
        mask[0, i, :len(r.rewards)] = 1.0
    actions = pad([r.actions for r in records])
    return Episodes(observations=pad([r.observations for r in records]).float(),
                    actions=actions if not actions.is_floating_point() else actions.float(),
                    rewards=pad([r.rewards for r in records]).float(), mask=mask, tasks=[None],
                    truncated=torch.tensor([[r.truncated for r in records]]),
                    terminated=torch.tensor([[r.terminated for r in records]]),
                    final_observations=torch.as_tensor(np.stack([r.final_observation for r in records]))[None].float())


class MetaPolicy(abc.ABC):
    """A trained meta-policy (from :func:`load_policy`): adapts to the task of an env it is given.

    Each meta-RL algorithm has its subclass next to it (``MAMLPolicy`` in ``metarl.agents.maml_policy``,
    ``RL2Policy``, ``PEARLPolicy``), which implements :meth:`_adapt` with the algorithm's own adaptation.

    Attributes:
        algorithm: the trained algorithm (its settings in ``algorithm.cfg``).
        default_episodes: what ``adapt`` collects when ``episodes`` is not given (the run's own setting).
        horizon: the episode length when the env declares none.
    """

    default_episodes: int = 1

    @classmethod
    def from_run(cls, run: SavedRun) -> "MetaPolicy":
        """The policy of a trained run (an algorithm record's ``load``: ``load=MyPolicy.from_run``)."""
        return cls(run.algorithm())

    def __init__(self, algorithm: MetaRLAlgorithm):
        self.algorithm = algorithm
        sampler = algorithm.sampler  # type: ignore[attr-defined]
        self.observation_space: gym.Space = sampler.env.observation_space
        self.action_space: gym.Space = sampler.env.action_space
        self.horizon = int(sampler.horizon)

    def adapt(self, env: gym.Env, episodes: int | None = None, *, seed: int | None = None,
              **kwargs: Any) -> AdaptedPolicy:
        """Collect ``episodes`` episodes on ``env``'s current task and adapt to it.

        ``seed`` seeds the first episode's reset and the action noise (the same seed gives the same
        adapted policy). ``episodes=0`` gives the policy before adaptation.

        Raises:
            ValueError: the env's spaces differ from the run's, or ``episodes`` is negative.
        """
        check_spaces(env, self.observation_space, self.action_space, f"this {self.algorithm.name} run")
        k = self.default_episodes if episodes is None else episodes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"episodes must be a non-negative integer, got {episodes!r}")
        generator = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(0, 2**62)))
        seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=max(int(k), 1)).tolist() \
            if seed is not None else [None] * max(int(k), 1)
        return self._adapt(env, int(k), seeds, generator, **kwargs)

    @abc.abstractmethod
    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator,
               **kwargs: Any) -> AdaptedPolicy:
        ...

    def collect(self, env: gym.Env, actor: AdaptedPolicy, seeds: Sequence[int | None], sample: bool = True
                ) -> list[EpisodeRecord]:
        """One episode per seed on ``env`` with ``actor``."""
        horizon = _env_horizon(env, self.horizon)
        return [_run_episode(env, actor, sample=sample, seed=s, render=False, max_steps=horizon) for s in seeds]


def load_policy(run_dir: str | os.PathLike, *, best: bool = False) -> MetaPolicy:
    """The trained meta-policy of a ``metarl train`` run directory (``best=True``: its ``best.pt``); the
    meta-RL case of :func:`metarl.load`.

    Raises:
        CheckpointError: no readable checkpoint.
        ValueError: the run is not a meta-RL run (few-shot runs: ``metarl.fewshot.load_learner``).
    """
    return load(run_dir, best=best, kind="meta-rl")
