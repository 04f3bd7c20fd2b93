#!/usr/bin/env python
"""How large and how fragile a MAML-RL meta-policy's adaptation is, from a run's checkpoint.

    python scripts/maml_diagnostics.py runs/hc-dir-trpo [runs/other ...] [--tasks 10 --episodes 20 --seed 7]

For each ``metarl train --algo maml-trpo|maml-ppo`` run directory, on ``--tasks`` fresh tasks with
``--episodes`` episodes each from the meta-policy (one torch thread), it prints:

* ``inner-step KL``: mean KL(pi_theta || pi_theta'_i) over the support states, where theta'_i is
  the meta-training inner step (``num_inner_steps`` steps of ``inner_lr``) on task i. At
  initialisation this is small; a meta-policy that has learned to take large steps shows large
  values, and a step that keeps growing overshoots.
* ``saturated means``: fraction of action-mean entries outside the action bounds (the policy acts
  in normalised units, bounds [-1, 1]); the environment clips those actions, so their gradient
  carries no reward signal.
* ``Adam-step KL``: the KL by which the pre-adaptation policy moves for ``theta - lr * sign(g)``,
  g the gradient of the support REINFORCE loss and ``lr`` 1e-3 (the size of a first Adam step at
  ProMP's learning rate), and how far each adapted policy moves for the same step. A large value
  means one outer Adam step can change the policy far more than a trust region allows.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl.adaptation import detach_params
from metarl.cli import load_run


def diagnose(run_dir: str, tasks: int = 10, episodes: int = 20, seed: int = 7, lr: float = 1e-3,
             at_init: bool = False) -> dict[str, Any]:
    """The three measurements above for one run directory (``at_init``: its initial meta-policy)."""
    algo = load_run(run_dir, weights=not at_init)
    if not hasattr(algo, "adapt"):
        raise ValueError(f"{run_dir}: not a MAML run ({algo.name}); these diagnostics need an inner step")
    rng = np.random.default_rng(seed)
    task_list = algo.sampler.sample_tasks(tasks, rng)
    params = detach_params(algo.meta_params())
    support = algo.task_batch(algo.sampler.sample(algo.act_fn(params, False), task_list, episodes, rng))
    obs = support["observations"]
    steps = algo.cfg.num_inner_steps
    adapted = algo.adapt(params, support, steps=steps, first_order=True)

    theta = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    loss = torch.stack([algo.inner_loss({n: p for n, p in theta.items()},
                                        {k: v[i] for k, v in support.items()}) for i in range(tasks)]).mean()
    grads = torch.autograd.grad(loss, list(theta.values()))
    moved = {n: p - lr * torch.sign(g) for (n, p), g in zip(params.items(), grads)}
    moved_adapted = algo.adapt(moved, support, steps=steps, first_order=True)
    mask = support["mask"] > 0
    with torch.no_grad():
        pre = algo._dist(params, obs, batched=False)
        post = algo._dist(adapted, obs, batched=True)
        mean = getattr(pre, "mean", None)
        return {
            "run": str(run_dir),
            "algo": algo.name,
            "env_steps": 0 if at_init else algo.env_steps,
            "inner_step_kl": float(pre.kl(post)[mask].mean()),
            "saturated_means": float((mean.abs() > 1)[mask].float().mean()) if mean is not None else None,
            "adam_step_kl_pre": float(pre.kl(algo._dist(moved, obs, batched=False))[mask].mean()),
            "adam_step_kl_adapted": float(post.kl(algo._dist(moved_adapted, obs, batched=True))[mask].mean()),
        }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories of metarl train (maml-trpo or maml-ppo)")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--at-init", action="store_true", help="also each run's initial meta-policy, for reference")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for run in args.runs:
        if args.at_init:
            rows.append({**diagnose(run, args.tasks, args.episodes, args.seed, at_init=True), "run": f"{run} (init)"})
        rows.append(diagnose(run, args.tasks, args.episodes, args.seed))
    print("| run | algo | env steps | inner-step KL | saturated means | Adam-step KL (pre / adapted) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        sat = "n/a" if r["saturated_means"] is None else f"{100 * r['saturated_means']:.0f}%"
        print(f"| {r['run']} | {r['algo']} | {r['env_steps']:,} | {r['inner_step_kl']:.3g} | {sat} | "
              f"{r['adam_step_kl_pre']:.3g} / {r['adam_step_kl_adapted']:.3g} |")
    return rows


if __name__ == "__main__":
    main()
