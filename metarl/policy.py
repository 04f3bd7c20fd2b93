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

from metarl.algorithm import MetaAlgorithm
from metarl.sampler import Episodes

__all__ = ["load_policy", "MetaPolicy", "AdaptedPolicy", "EpisodeRecord", "check_spaces"]


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


def check_spaces(env: gym.Env, observation_space: gym.Space, action_space: gym.Space, who: str) -> None:
    """Raise a one-line ``ValueError`` unless ``env``'s spaces have the kind and shape the policy was trained on."""
    for name, mine, theirs in (("observation", observation_space, env.observation_space),
                               ("action", action_space, env.action_space)):
        same = type(mine) is type(theirs) and mine.shape == theirs.shape
        if isinstance(mine, gym.spaces.Discrete) and same:
            same = int(mine.n) == int(theirs.n)
        if not same:
            raise ValueError(f"{who} was trained on the {name} space {mine}; this env has {theirs}: use a family "
                             "with the same spaces")


def _env_horizon(env: gym.Env, default: int) -> int:
    spec = getattr(env, "spec", None)
    return int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else default


class AdaptedPolicy(abc.ABC):
    """A meta-policy after adaptation to one task: acts on single observations."""

    def __init__(self, policy: "MetaPolicy", generator: torch.Generator):
        self.policy = policy
        self.generator = generator

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

    Attributes:
        algorithm: the trained algorithm (its settings in ``algorithm.cfg``).
        default_episodes: what ``adapt`` collects when ``episodes`` is not given (the run's own setting).
        horizon: the episode length when the env declares none.
    """

    default_episodes: int = 1

    def __init__(self, algorithm: MetaAlgorithm):
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


# ----------------------------------------------------------------------------------------------------
# MAML


class _MAMLAdapted(AdaptedPolicy):
    def __init__(self, policy: "MetaPolicy", generator: torch.Generator, params: dict[str, torch.Tensor],
                 batched: bool):
        super().__init__(policy, generator)
        self.params, self.batched = params, batched

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        algo = self.policy.algorithm
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None]
        with torch.no_grad():
            dist = algo._dist(self.params, x[None] if self.batched else x, self.batched)  # type: ignore[attr-defined]
            action = dist.sample(self.generator) if sample else dist.mode()
        action = action.reshape(-1, *action.shape[(2 if self.batched else 1):])[0]
        return action.numpy() if action.is_floating_point() else action.numpy().astype(np.int64)[()]


class MAMLPolicy(MetaPolicy):
    """MAML-TRPO / MAML-PPO: ``adapt`` takes the run's inner step(s) on the collected episodes."""

    def __init__(self, algorithm: MetaAlgorithm):
        super().__init__(algorithm)
        self.default_episodes = int(algorithm.cfg.episodes_per_task)  # type: ignore[attr-defined]

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator,
               steps: int | None = None) -> AdaptedPolicy:
        """``steps`` inner steps (default: the run's ``inner_steps``), each on ``episodes`` fresh episodes."""
        from metarl.adaptation import detach_params

        algo: Any = self.algorithm
        steps = algo.cfg.inner_steps if steps is None else steps
        meta = detach_params(algo.meta_params())
        actor = _MAMLAdapted(self, generator, meta, batched=False)
        if episodes == 0:
            return actor
        for step in range(steps):
            records = self.collect(env, actor, seeds if step == 0 else [None] * episodes, sample=True)
            batch = algo.task_batch(records_to_episodes(records))
            with torch.no_grad():
                params = algo.adapt(actor.params, batch, steps=1, first_order=True, batched_params=actor.batched,
                                    step_size=algo.step_size(meta, step))
            actor = _MAMLAdapted(self, generator, params, batched=True)
        return actor


# ----------------------------------------------------------------------------------------------------
# RL^2


class _RL2Adapted(AdaptedPolicy):
    """Carries the GRU state and the previous action, reward and episode-end flag through the trial."""

    def __init__(self, policy: "MetaPolicy", generator: torch.Generator):
        super().__init__(policy, generator)
        algo: Any = policy.algorithm
        self.inputs = algo.sampler.inputs
        self.state = algo.net.initial_state(1)
        self.prev_action = np.zeros((1, self.inputs.action_dim), dtype=np.float32)
        self.prev_reward, self.done, self.pending = 0.0, 0.0, None

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        x = self.inputs.compose(np.asarray(obs)[None], self.prev_action, np.array([self.prev_reward]),
                                np.array([self.done]))
        with torch.no_grad():
            dist, self.state = self.policy.algorithm.net.step(torch.as_tensor(x), self.state)  # type: ignore[attr-defined]
            action = dist.sample(self.generator) if sample else dist.mode()
        self.pending = action[0].numpy()
        return self.pending if action.is_floating_point() else self.pending.astype(np.int64)[()]

    def observe(self, reward: float, terminated: bool = False, truncated: bool = False) -> None:
        if self.pending is None:
            raise RuntimeError("observe() follows act(): call act(obs) first")
        self.prev_action = self.inputs.encode_actions(np.asarray(self.pending)[None])
        self.prev_reward, self.done, self.pending = float(reward), float(terminated or truncated), None


class RL2Policy(MetaPolicy):
    """RL^2: ``adapt`` runs the episodes as the start of a trial; the adapted policy continues it."""

    def __init__(self, algorithm: MetaAlgorithm):
        super().__init__(algorithm)
        self.default_episodes = max(int(algorithm.cfg.episodes_per_trial) - 1, 0)  # type: ignore[attr-defined]

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator,
               sample: bool = True) -> AdaptedPolicy:
        """``sample``: sample the trial's first episodes' actions (as in training and the meta-test)."""
        actor = _RL2Adapted(self, generator)
        if episodes:
            self.collect(env, actor, seeds, sample=sample)
        return actor


# ----------------------------------------------------------------------------------------------------
# PEARL


class _PEARLAdapted(AdaptedPolicy):
    """Acts with ``z`` drawn from the posterior at each :meth:`reset` (the prior before any context)."""

    def __init__(self, policy: "MetaPolicy", generator: torch.Generator, posterior: torch.distributions.Normal):
        super().__init__(policy, generator)
        self.posterior = posterior
        self.reset()

    def reset(self) -> None:
        self.z = self.policy.algorithm._sample_z(self.posterior, self.generator)  # type: ignore[attr-defined]

    def act(self, obs: Any, sample: bool = False) -> np.ndarray:
        algo: Any = self.policy.algorithm
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(1, 1, -1)
        with torch.no_grad():
            action = algo.act_fn(self.z.reshape(1, 1, -1), deterministic=not sample)(x, self.generator)
        return action[0, 0].numpy()


class PEARLPolicy(MetaPolicy):
    """PEARL: ``adapt`` infers the posterior over the task variable from the episodes' transitions."""

    def _adapt(self, env: gym.Env, episodes: int, seeds: list[int | None], generator: torch.Generator
               ) -> AdaptedPolicy:
        from metarl.replay import episode_transitions

        algo: Any = self.algorithm
        actor = _PEARLAdapted(self, generator, algo.encoder.prior((1,)))
        context = torch.zeros((1, 0, algo.encoder.input_dim))
        for e in range(episodes):
            sample = e == 0 and algo.cfg.metatest_sample_prior  # as the meta-test acts
            records = self.collect(env, actor, seeds[e:e + 1], sample=sample)
            tr = episode_transitions(records_to_episodes(records), algo.scaler)
            context = torch.cat([context, algo.context_of({k: v[:, 0] for k, v in tr.items()})], dim=1)
            with torch.no_grad():
                actor = _PEARLAdapted(self, generator, algo.infer_posterior(context))
        return actor


_POLICIES: dict[str, type[MetaPolicy]] = {"maml-trpo": MAMLPolicy, "maml-ppo": MAMLPolicy, "rl2-ppo": RL2Policy,
                                          "pearl": PEARLPolicy}


def load_policy(run_dir: str | os.PathLike, *, best: bool = False) -> MetaPolicy:
    """The trained meta-policy of a ``metarl train`` run directory (``best=True``: its ``best.pt``).

    Raises:
        CheckpointError: no readable checkpoint.
        ValueError: the run is not a meta-RL run (few-shot runs: ``metarl.fewshot.load_learner``).
    """
    from metarl.launcher import load_run

    algorithm = load_run(run_dir, best=best)
    kind = _POLICIES.get(algorithm.name)
    if kind is None:
        raise ValueError(f"{run_dir} is a {algorithm.name} run, not a meta-RL policy: load few-shot learners with "
                         "metarl.fewshot.load_learner and continual ones with metarl.continual.load_learner")
    return kind(algorithm)
