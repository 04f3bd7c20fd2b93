"""Classic (non-meta-learned) policies for the bandit and tabular-MDP families, the yardsticks of RL^2.

Every baseline runs a batch of independent *trials* at once: a trial is ``episodes_per_trial``
episodes of one task, and what a baseline has learned persists across the episodes of a trial
(it is forgotten only by :meth:`BaselinePolicy.reset`). That is the setting an RL^2 policy is
judged in, so :func:`evaluate_baselines` gives numbers directly comparable with it on the same
sampled tasks.

Bandits (``metarl/BernoulliBandit-v0``; Beta(1, 1) priors match the family's U[0, 1] arm means):

``random``
    a uniformly random arm.
``greedy`` / ``epsilon_greedy``
    the arm with the highest posterior mean ``(1 + successes) / (2 + pulls)`` (an unpulled arm
    counts 1/2); epsilon-greedy pulls a uniformly random arm with probability ``epsilon``.
``ucb1``
    Auer et al. (2002): pull every arm once, then the arm maximising
    ``mean + c * sqrt(2 ln t / pulls)``.
``thompson``
    Thompson sampling: draw ``theta ~ Beta(1 + successes, 1 + failures)`` per arm, pull the argmax.
``gittins``
    index policy with Beta-Bernoulli Gittins indices *computed* here by calibration (see
    :func:`finite_horizon_gittins_indices`): by default the finite-horizon, undiscounted index
    for the number of pulls left in the trial (Nino-Mora 2011), or the classic discounted index
    (:func:`gittins_indices`) when a ``discount`` is given.
``bayes_optimal``
    the exact Bayes-optimal policy for the trial's ``n`` pulls, by dynamic programming over the
    arms' posteriors (short trials only; the ceiling for any policy on tasks from the prior).

Tabular MDPs (``metarl/TabularMDP-v0``):

``random``
    a uniformly random action.
``psrl``
    posterior sampling for RL (Strens 2000; Osband et al. 2013): a Dirichlet posterior on each
    transition row and a Normal posterior on each mean reward (conjugate to the family's
    prior and its unit Gaussian reward noise); at the start of every episode it samples one
    MDP from the posterior and follows that MDP's finite-horizon optimal policy (value
    iteration over the episode's horizon).

Ties between equally good arms are broken uniformly at random with the policy's generator.
``python -m metarl.agents.baselines ENV_ID`` prints every baseline's return on sampled tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.agents.classic_policies import (
    BaselinePolicy,
    BayesOptimalBanditPolicy,
    BetaBernoulliBanditPolicy,
    EpsilonGreedyPolicy,
    GittinsIndexPolicy,
    GreedyPolicy,
    RandomPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
)
from metarl.agents.gittins import finite_horizon_gittins_indices, gittins_indices
from metarl.agents.psrl import PSRLPolicy
from metarl.tasks import Task, check_positive_int, check_rng, check_task_family, make_env

__all__ = [
    "BaselinePolicy",
    "RandomPolicy",
    "BetaBernoulliBanditPolicy",
    "GreedyPolicy",
    "EpsilonGreedyPolicy",
    "UCB1Policy",
    "ThompsonSamplingPolicy",
    "GittinsIndexPolicy",
    "BayesOptimalBanditPolicy",
    "PSRLPolicy",
    "finite_horizon_gittins_indices",
    "gittins_indices",
    "bandit_baselines",
    "BAYES_OPTIMAL_MAX_HORIZON",
    "tabular_mdp_baselines",
    "default_baselines",
    "episode_horizon",
    "BaselineResult",
    "evaluate_baselines",
    "BaselineActor",
]



BAYES_OPTIMAL_MAX_HORIZON = 12
"""Longest trial for which :func:`bandit_baselines` includes the exact Bayes-optimal policy."""


def bandit_baselines(num_arms: int, horizon: int, gittins_grid_size: int = 1024) -> dict[str, BaselinePolicy]:
    """The bandit baselines with their default settings, keyed by name.

    ``bayes_optimal`` is included for ``horizon <= BAYES_OPTIMAL_MAX_HORIZON`` (its dynamic
    program grows too fast beyond). The Gittins table costs ``O(gittins_grid_size * horizon**3)``:
    3 s for ``horizon=100``, 30 s for 200, several minutes for 500 (a smaller grid is
    proportionally faster and slightly less accurate).
    """
    baselines: dict[str, BaselinePolicy] = {
        "random": RandomPolicy(num_arms),
        "greedy": GreedyPolicy(num_arms),
        "epsilon_greedy": EpsilonGreedyPolicy(num_arms, epsilon=0.1),
        "ucb1": UCB1Policy(num_arms),
        "thompson": ThompsonSamplingPolicy(num_arms),
        "gittins": GittinsIndexPolicy(num_arms, horizon, grid_size=gittins_grid_size),
    }
    if horizon <= BAYES_OPTIMAL_MAX_HORIZON:
        baselines["bayes_optimal"] = BayesOptimalBanditPolicy(num_arms, horizon)
    return baselines


def tabular_mdp_baselines(num_states: int, num_actions: int, horizon: int,
                          reward_noise_std: float = 1.0) -> dict[str, BaselinePolicy]:
    """The tabular-MDP baselines with their default settings, keyed by name."""
    return {
        "random": RandomPolicy(num_actions),
        "psrl": PSRLPolicy(num_states, num_actions, horizon, reward_noise_std=reward_noise_std),
    }


def episode_horizon(env: gym.Env) -> int:
    """Steps per episode: the spec's ``max_episode_steps``, else the unwrapped env's ``horizon``."""
    if env.spec is not None and env.spec.max_episode_steps is not None:
        return int(env.spec.max_episode_steps)
    horizon = getattr(env.unwrapped, "horizon", None)
    if horizon is None:
        raise ValueError(f"{env} has neither a max_episode_steps nor a horizon attribute; "
                         "make it with max_episode_steps=...")
    return int(horizon)


def default_baselines(env: gym.Env, episodes_per_trial: int = 1) -> dict[str, BaselinePolicy]:
    """The baselines for ``env``'s family (BernoulliBandit or TabularMDP), for trials of ``episodes_per_trial``."""
    from metarl.envs.bandits import BernoulliBanditEnv
    from metarl.envs.tabular import TabularMDPEnv

    base = env.unwrapped
    horizon = episode_horizon(env)
    if isinstance(base, BernoulliBanditEnv):  # a bandit policy learns across the trial: all its pulls count
        return bandit_baselines(base.k, horizon * episodes_per_trial)
    if isinstance(base, TabularMDPEnv):
        return tabular_mdp_baselines(base.num_states, base.num_actions, horizon, base.reward_noise_std)
    raise ValueError(f"no default baselines for {type(base).__name__}; pass baselines={{name: policy}}")


class BaselineActor:
    """A baseline as the shared sampler's act function over RL^2 trials (one trial per simulation).

    It reads the raw observation out of the RL^2 input, starts a new episode of its policy when the
    trial's inner episode changes, and learns from every transition the sampler shows it
    (:meth:`observe`), so its knowledge persists across the episodes of a trial as an RL^2 policy's does.

    Args:
        policy: the baseline (reset here for the backend's simulations).
        backend: the trial backend the sampler steps (:class:`~metarl.wrappers.RL2TrialBatchedEnv`).
        rng: the policy's own generator.
    """

    def __init__(self, policy: BaselinePolicy, backend: Any, rng: np.random.Generator):
        self.policy, self.backend = policy, backend
        policy.reset(backend.num_envs, rng)
        self._episode = -1
        self._obs: np.ndarray | None = None

    def __call__(self, obs: Any, generator: Any) -> Any:
        import torch

        lead = obs.shape[:2]
        self._obs = obs.reshape(-1, obs.shape[-1]).numpy()[:, self.backend.inputs.obs_slice]
        if self.backend.episode_index != self._episode:
            self._episode = self.backend.episode_index
            self.policy.start_episode()
        actions = np.asarray(self.policy.act(self._obs))
        return torch.as_tensor(actions).reshape(*lead, *actions.shape[1:])

    def observe(self, actions: np.ndarray, rewards: np.ndarray, info: Mapping[str, Any], valid: np.ndarray) -> None:
        """Learn from the step just taken (``valid``: the simulations that moved)."""
        self.policy.update(self._obs, actions.reshape(len(valid), *actions.shape[2:]), rewards,
                           info["observation"], valid)


@dataclass(frozen=True)
class BaselineResult:
    """How one baseline did on a set of tasks.

    Attributes:
        mean_total_return: mean over tasks of the trial's total (all episodes) return.
        stderr_total_return: standard error of that mean.
        mean_episode_returns: mean return of each episode of the trial, ``(episodes_per_trial,)``.
        total_returns: each task's total return, ``(num_tasks,)``.
    """

    mean_total_return: float
    stderr_total_return: float
    mean_episode_returns: np.ndarray
    total_returns: np.ndarray


def evaluate_baselines(env_id: str, env_kwargs: Mapping[str, Any] | None, tasks: Sequence[Task],
                       episodes_per_trial: int, rng: np.random.Generator,
                       baselines: Mapping[str, BaselinePolicy] | None = None,
                       max_episode_steps: int | None = None) -> dict[str, BaselineResult]:
    """Run every baseline for one trial on each task, through the shared sampler (as RL^2 is run).

    All baselines see the same reset seeds (common random numbers), so their differences are
    less noisy than independent runs would be.

    Args:
        env_id: registered family id, e.g. ``"metarl/BernoulliBandit-v0"``.
        env_kwargs: constructor kwargs for ``gymnasium.make`` (e.g. ``{"k": 5, "n": 10}``).
        tasks: the tasks (e.g. the ones the meta-policy is evaluated on).
        episodes_per_trial: episodes of the same task per trial (1 for bandits, 10 for tabular MDPs
            in the RL^2 paper).
        rng: source of the reset seeds and of the baselines' own randomness.
        baselines: ``{name: policy}``; default :func:`default_baselines` for the family.
        max_episode_steps: inner-episode horizon (default: the family's).

    Returns:
        ``{name: BaselineResult}``.
    """
    from metarl.wrappers import RL2TrialSampler

    episodes_per_trial = check_positive_int("episodes_per_trial", episodes_per_trial)
    rng = check_rng(rng)
    if len(tasks) == 0:
        raise ValueError("need at least one task to evaluate baselines on")
    sampler = RL2TrialSampler(env_id, dict(env_kwargs or {}), episodes_per_trial=episodes_per_trial,
                              max_episode_steps=max_episode_steps)
    try:
        policies = dict(baselines) if baselines is not None else default_baselines(sampler.env, episodes_per_trial)
        trial_seed = int(rng.integers(0, 2**63 - 1))  # the same trials (reset seeds) for every baseline
        results = {}
        for (name, policy), policy_rng in zip(policies.items(), rng.spawn(len(policies))):
            actor = BaselineActor(policy, sampler.backend(tasks, 1), policy_rng)
            trials = sampler.sample(actor, tasks, 1, np.random.default_rng(trial_seed))
            returns = sampler.episode_returns_by_index(trials.rewards)[:, 0].double().numpy()  # (tasks, episodes)
            totals = returns.sum(axis=1)
            stderr = float(totals.std(ddof=1) / math.sqrt(len(totals))) if len(totals) > 1 else float("nan")
            results[name] = BaselineResult(float(totals.mean()), stderr, returns.mean(axis=0), totals)
    finally:
        sampler.close()
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, BaselineResult]:
    """Command line: evaluate the default baselines of a family on freshly sampled tasks.

    ``python -m metarl.agents.baselines metarl/BernoulliBandit-v0 --kwargs k=5 n=10 --tasks 1000``
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m metarl.agents.baselines", description=main.__doc__)
    parser.add_argument("env_id", help="family id, e.g. metarl/BernoulliBandit-v0 or metarl/TabularMDP-v0")
    parser.add_argument("--kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="env constructor kwargs (integers or floats), e.g. k=5 n=10")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks sampled (one trial each)")
    parser.add_argument("--episodes-per-trial", type=int, default=None,
                        help="episodes per trial (default: 1 for bandits, 10 otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of task sampling and evaluation")
    args = parser.parse_args(argv)
    env_kwargs: dict[str, Any] = {}
    for item in args.kwargs:
        key, sep, text = item.partition("=")
        if not sep:
            parser.error(f"--kwargs items must be KEY=VALUE, got {item!r}")
        env_kwargs[key] = int(text) if text.lstrip("-").isdigit() else float(text)
    env = make_env(args.env_id, **env_kwargs)
    task_rng, eval_rng = np.random.default_rng(args.seed).spawn(2)
    tasks = check_task_family(env).sample_tasks(args.tasks, task_rng)
    episodes = args.episodes_per_trial
    if episodes is None:
        from metarl.envs.bandits import BernoulliBanditEnv

        episodes = 1 if isinstance(env.unwrapped, BernoulliBanditEnv) else 10
    results = evaluate_baselines(args.env_id, env_kwargs, tasks, episodes, eval_rng)
    print(f"{args.env_id} {env_kwargs} tasks={args.tasks} episodes_per_trial={episodes} seed={args.seed}")
    for name, result in results.items():
        print(f"  {name:16s} total return {result.mean_total_return:8.3f} +- {result.stderr_total_return:.3f}")
    return results


if __name__ == "__main__":
    main()
