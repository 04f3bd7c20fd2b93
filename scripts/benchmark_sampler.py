#!/usr/bin/env python
"""Sampler throughput on Navigation2D: metarl's batched sampler vs Gymnasium's SyncVectorEnv.

Both collect the same workload in the same process: ``--tasks`` tasks x ``--episodes`` episodes of 100
steps, actions from the same MAML policy (2x100 ReLU Gaussian MLP) evaluated on the whole batch each
step. Reported: env steps per second of each path and the ratio.

    python scripts/benchmark_sampler.py [--tasks 20 --episodes 20 --repeats 3 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import metarl  # noqa: F401
from metarl.networks import GaussianMLPPolicy
from metarl.sampler import EpisodeSampler


def sync_vector_env_rollout(tasks, episodes: int, policy, seed: int) -> int:
    """Collect the same episodes with a Gymnasium SyncVectorEnv of per-task envs; returns env steps."""
    def make(task):
        def thunk():
            env = gym.make("metarl/Navigation2D-v0")
            env.unwrapped.set_task(task)
            return env
        return thunk

    fns = [make(t) for t in tasks for _ in range(episodes)]
    venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    generator = torch.Generator().manual_seed(seed)
    obs, _ = venv.reset(seed=seed)
    alive = np.ones(len(fns), dtype=bool)
    steps = 0
    for _ in range(100):
        with torch.no_grad():
            actions = policy(torch.as_tensor(obs, dtype=torch.float32)).sample(generator).numpy()
        obs, _, term, trunc, _ = venv.step(actions)
        steps += int(alive.sum())
        alive &= ~(term | trunc)
        if not alive.any():
            break
    venv.close()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(100, 100))
    sampler = EpisodeSampler("metarl/Navigation2D-v0")
    tasks = sampler.sample_tasks(args.tasks, np.random.default_rng(0))
    act = lambda obs, g: policy(obs).sample(g)  # noqa: E731
    sampler.sample(act, tasks, args.episodes, np.random.default_rng(0))  # warm-up
    results: dict[str, float] = {}
    for name, run in {
        "metarl_sampler": lambda r: sampler.sample(act, tasks, args.episodes, np.random.default_rng(r)).num_steps,
        "gymnasium_sync_vector_env": lambda r: sync_vector_env_rollout(tasks, args.episodes, policy, r),
    }.items():
        best = 0.0
        for r in range(args.repeats):
            start = time.perf_counter()
            steps = run(r)
            best = max(best, steps / (time.perf_counter() - start))
        results[name] = best
    results["ratio"] = results["metarl_sampler"] / results["gymnasium_sync_vector_env"]
    print(f"Navigation2D, {args.tasks} tasks x {args.episodes} episodes x 100 steps, 2x100 MLP policy, "
          f"best of {args.repeats}")
    print(f"  metarl batched sampler     {results['metarl_sampler']:>12,.0f} env steps/s")
    print(f"  Gymnasium SyncVectorEnv    {results['gymnasium_sync_vector_env']:>12,.0f} env steps/s")
    print(f"  ratio                      {results['ratio']:>12.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**results, "tasks": args.tasks, "episodes": args.episodes}, f, indent=2)


if __name__ == "__main__":
    main()
