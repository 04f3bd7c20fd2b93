#!/usr/bin/env python
"""Score the same HalfCheetahVel episodes with v5's velocity and with the original MAML-RL's.

    python scripts/velocity_definitions.py runs/hc-vel-trpo-fs1-lvc-s1 [--best] [--tasks 40 --episodes 5 --seed 1234]

The registered families reward v5's ``x_velocity`` (the torso's x displacement over the step / dt);
rllab's ``HalfCheetahEnvRand`` rewarded ``get_body_comvel("torso")[0]`` after the step, which is
the velocity of the center of mass of the torso's subtree, i.e. of the whole robot (MuJoCo's
``subtree_linvel``). This script takes a ``metarl train`` run on a HalfCheetahVel family, adapts its
meta-policy one inner step on each of ``--tasks`` tasks (``--seed``; the meta-test's tasks
with its default seed and ``--tasks 40``), runs ``--episodes`` episodes of each adapted policy in the single env and
scores every step both ways (control cost included in both). The episodes run in the single
Gymnasium env, not the shared sampler: the batched backend does not compute the subtree velocity,
and this is a check, not a training path (the support episodes and the inner step are the
algorithm's own). The difference is what the definition
changes for this policy's episodes; a policy trained on the other reward could behave differently.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

from metarl.adaptation import detach_params, functional_forward
from metarl.cli import load_run


def score_both(run_dir: str, *, best: bool = False, tasks: int = 40, episodes: int = 5,
               seed: int = 1234) -> dict[str, Any]:
    """Mean return of the one-step-adapted policies with v5's and with the whole-body velocity, per episode."""
    algo = load_run(run_dir, best=best)
    cfg = algo.cfg
    if "HalfCheetahVel" not in cfg.env:
        raise ValueError(f"{run_dir} trained on {cfg.env}; this check is for HalfCheetahVel families")
    rng = np.random.default_rng(seed)
    task_list = algo.sampler.sample_tasks(tasks, rng)
    params = detach_params(algo.meta_params())
    support = algo.sampler.sample(algo.act_fn(params, False), task_list, cfg.episodes_per_task, rng)
    with torch.no_grad():
        adapted = algo.adapt(params, algo.task_batch(support), steps=1, first_order=True, batched_params=False)
    kwargs: dict[str, Any] = dict(cfg.env_kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    env = gym.make(cfg.env, **kwargs)
    model, data = env.unwrapped.model, env.unwrapped.data
    torso = model.body("torso").id
    generator = torch.Generator().manual_seed(seed)
    targets, v5_returns, com_returns = [], [], []
    for i, task in enumerate(task_list):
        policy_params = {name: value[i] for name, value in adapted.items()}
        env.unwrapped.set_task(task)
        target = float(task["velocity"])
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + 1000 * i + e)
            v5_return = com_return = 0.0
            done = False
            while not done:
                with torch.no_grad():
                    dist = functional_forward(algo.policy, policy_params, torch.as_tensor(obs, dtype=torch.float32))
                obs, reward, terminated, truncated, info = env.step(dist.sample(generator).numpy())
                done = terminated or truncated
                # rllab's forward_dynamics: model.forward() after the step, then the subtree COM velocity
                mujoco.mj_forward(model, data)
                mujoco.mj_subtreeVel(model, data)
                v5_return += float(reward)
                com_return += -abs(float(data.subtree_linvel[torso, 0]) - target) + float(info["reward_ctrl"])
            targets.append(target)
            v5_returns.append(v5_return)
            com_returns.append(com_return)
    env.close()
    return {"targets": np.array(targets), "v5": np.array(v5_returns), "whole_body": np.array(com_returns)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory of metarl train on a HalfCheetahVel family")
    parser.add_argument("--best", action="store_true", help="the run's best validation checkpoint (best.pt)")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = score_both(args.run, best=args.best, tasks=args.tasks, episodes=args.episodes, seed=args.seed)
    n = len(out["v5"])
    print(f"{args.run}{' (best)' if args.best else ''}: {n} episodes of {args.tasks} one-step-adapted tasks")
    print(f"mean return, v5 velocity (torso, finite difference): {out['v5'].mean():.1f}")
    print(f"mean return, whole-body COM velocity (original):    {out['whole_body'].mean():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
