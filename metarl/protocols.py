"""Benchmarks' own evaluation protocols, run on any trained meta-policy: :func:`metaworld_evaluation`.

An algorithm's meta-test (``metatest.json``) is its own protocol: MAML's return after its inner steps, RL^2's and
PEARL's trials. A number that sits next to a paper's needs the benchmark's protocol instead. Meta-World's
(``metaworld.evaluation.metalearning_evaluation``, Meta-World+ v3) is, for every test task:

1. adaptation: ``adaptation_episodes`` (10) episodes of the meta-policy on the task (Meta-World's horizon, 500
   steps, run to the horizon), then one adaptation (``adaptation_steps`` 1);
2. evaluation: ``evaluation_episodes`` (3) episodes of the adapted policy acting deterministically (its
   ``eval_action``), each ending at the first step whose ``info["success"]`` is set (terminate on success);
3. success rate: the fraction of evaluation episodes that succeeded, per task class, averaged over the classes.

Here the adaptation is each algorithm's own, through its user-facing policy (:meth:`metarl.policy.MetaPolicy.adapt`,
so every algorithm, a user's too, runs the same protocol): MAML takes its run's inner step(s) (1 in the presets)
on the 10 episodes; RL^2 (GRU or transformer memory) runs them as the start of a trial and evaluates in the same
trial; PEARL infers its posterior from them and draws ``z`` from it at each evaluation episode.

Difference from Meta-World's code, on purpose: it runs ``meta_batch_size`` (20) envs at once, ``num_evals`` (10)
rounds of one task per env (every test task once when a class has 40), and counts the first 3 evaluation episodes
to *finish* among a class's envs in a round (an early success finishes first, so the count favours success). Here
every test task of the family (or the first ``tasks_per_class`` of each class) runs its own 3 evaluation
episodes and all count. With one env per class (``meta_batch_size`` = the number of classes) the two agree;
``tests/test_metaworld.py`` checks that against Meta-World's function episode for episode.

    metarl evaluate runs/ml10 --protocol metaworld                 # the run's test tasks, Meta-World's protocol
    metarl train --algo rl2-ppo --env metarl/MetaWorldML10-v0 --metatest-protocol metaworld
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.tasks import make_env

__all__ = ["MetaWorldProtocol", "TerminateOnSuccess", "metaworld_evaluation", "PROTOCOLS", "run_protocol",
           "format_protocol"]

#: ``metatest_protocol`` values: ``own`` (the algorithm's meta-test only) and the benchmarks' protocols
PROTOCOLS = ("own", "metaworld")


@dataclass(frozen=True)
class MetaWorldProtocol:
    """The settings of Meta-World's ``metalearning_evaluation`` (its defaults) and the horizon of its envs.

    Attributes:
        adaptation_episodes: episodes collected on a task before adapting.
        evaluation_episodes: episodes of the adapted policy whose success is counted.
        max_episode_steps: the horizon (Meta-World's ``max_path_length``).
        tasks_per_class: test tasks of each class to run (``None``: all of them).
    """

    adaptation_episodes: int = 10
    evaluation_episodes: int = 3
    max_episode_steps: int = 500
    tasks_per_class: int | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming a setting that is not a positive integer."""
        for name, value in asdict(self).items():
            if value is None and name == "tasks_per_class":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Meta-World protocol: {name} must be a positive integer, got {value!r}")


class TerminateOnSuccess(gym.Wrapper):
    """Ends an episode (``terminated``) at the first step whose ``info[key]`` is set, and remembers whether any step
    of the current episode succeeded (``succeeded``), as Meta-World's ``AutoTerminateOnSuccessWrapper``."""

    def __init__(self, env: gym.Env, key: str = "success", terminate: bool = True):
        super().__init__(env)
        self.key, self.terminate, self.succeeded = key, terminate, False

    def reset(self, **kwargs: Any):
        self.succeeded = False
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if bool(info.get(self.key, False)):
            self.succeeded = True
            terminated = terminated or self.terminate
        return obs, reward, terminated, truncated, info


def metaworld_evaluation(policy: Any, *, protocol: MetaWorldProtocol | None = None, seed: int = 0,
                         env_id: str | None = None, env_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Meta-World's meta-learning evaluation of ``policy`` on the test tasks of a Meta-World family.

    Args:
        policy: a trained meta-policy (a :class:`metarl.policy.MetaPolicy`: :func:`metarl.load_policy`, or an
            algorithm's ``meta_policy()``) of a Meta-World family's spaces.
        protocol: the protocol's settings (default: Meta-World's).
        seed: seeds each task's adaptation (its resets and action noise): the same seed gives the same table.
        env_id, env_kwargs: the family (default: the run's).

    Returns:
        ``success_rate`` (mean over classes of each class's success rate), ``success_rate_by_class``,
        ``return`` (mean evaluation-episode return), ``success_rate_by_task`` (in the family's ``test_tasks``
        order), the protocol's settings and the seconds it took.

    Raises:
        ValueError: a family without test tasks or a success flag, or a setting out of range.
    """
    protocol = protocol or MetaWorldProtocol()
    protocol.validate()
    cfg = policy.algorithm.cfg
    env_id = env_id or cfg.env
    env_kwargs = dict(cfg.env_kwargs if env_kwargs is None and env_id == cfg.env else env_kwargs or {})
    env = make_env(env_id, max_episode_steps=protocol.max_episode_steps, **env_kwargs)
    family = env.unwrapped
    key = getattr(family, "success_info_key", None)
    if key is None or not getattr(family, "test_tasks", None):
        env.close()
        raise ValueError(f"{env_id} has no test tasks with a success flag: Meta-World's protocol runs on "
                         "metarl/MetaWorldML1-v0 and metarl/MetaWorldML10-v0")
    by_class: dict[str, list[Any]] = {}
    for task in family.test_tasks:
        by_class.setdefault(task["name"], []).append(task)
    tasks = [t for ts in by_class.values() for t in ts[:protocol.tasks_per_class]]
    evaluator = TerminateOnSuccess(env, key)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    success: dict[str, list[float]] = {name: [] for name in by_class}
    returns, by_task = [], []
    try:
        for task in tasks:
            family.set_task(task)
            task_seed = int(rng.integers(0, 2**31 - 1))
            evaluator.terminate = False  # Meta-World's adaptation episodes run to the horizon
            adapted = policy.adapt(evaluator, episodes=protocol.adaptation_episodes, seed=task_seed)
            evaluator.terminate = True
            outcomes = []
            for _ in range(protocol.evaluation_episodes):
                record = adapted.run_episode(evaluator, sample=False)
                outcomes.append(float(evaluator.succeeded))
                returns.append(record.episode_return)
            success[task["name"]].extend(outcomes)
            by_task.append(float(np.mean(outcomes)))
    finally:
        env.close()
    rates = {name: float(np.mean(v)) for name, v in success.items() if v}
    return {"protocol": "metaworld", "env": env_id, "success_rate": float(np.mean(list(rates.values()))),
            "success_rate_by_class": rates, "return": float(np.mean(returns)), "n_tasks": len(tasks),
            "success_rate_by_task": by_task, "tasks": [t.to_json() for t in tasks], "seed": seed, **asdict(protocol),
            "seconds": time.perf_counter() - start}


def run_protocol(name: str, policy: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The result of protocol ``name`` (one of :data:`PROTOCOLS`) on ``policy``; ``None`` for ``own``."""
    if name == "own":
        return None
    if name == "metaworld":
        return metaworld_evaluation(policy, **kwargs)
    raise ValueError(f"unknown meta-test protocol {name!r}: choose from {list(PROTOCOLS)}")


def format_protocol(result: Mapping[str, Any]) -> str:
    """A protocol result as the lines ``metarl evaluate`` prints."""
    lines = [f"Meta-World protocol on {result['env']}: {result['n_tasks']} test tasks, {result['adaptation_episodes']} "
             f"adaptation episodes, {result['evaluation_episodes']} evaluation episodes of at most "
             f"{result['max_episode_steps']} steps ending at success",
             f"success rate (mean over classes): {result['success_rate']:.3f}   evaluation return: "
             f"{result['return']:.1f}"]
    lines += [f"  {name:<24} {rate:.3f}" for name, rate in sorted(result["success_rate_by_class"].items())]
    return "\n".join(lines)
