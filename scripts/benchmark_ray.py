#!/usr/bin/env python
"""MAML-TRPO iteration time with the local sampler and with Ray workers, and a projection to a cluster
(the ``metarl[ray]`` extra).

    python scripts/benchmark_ray.py                                   # HalfCheetahVel, local / Ray 1 / Ray 2
    python scripts/benchmark_ray.py --env metarl/Navigation2D-v0 --workers 1 2 --json runs/bench_ray.json

Settings: the local sampler (its MuJoCo backend steps with every core), Ray with each ``--workers`` count
(the cores shared out among the workers), and Ray with one 1-CPU worker (the projection's basis). Each setting
builds the preset's MAML-TRPO run (seed 0), runs one warm-up meta-iteration (worker start-up,
backends built) and then ``--iterations`` timed ones with the same generator, so every setting samples the same
episodes. Reported per iteration: wall time, time inside ``sampler.sample`` and, for Ray, the workers' own
sampling time (slowest worker per call, summed over calls), the ``ray.put`` of the act function and the rest of
Ray's dispatch and gathering.

The projection (printed, and in the JSON) for ``W`` 1-CPU workers on a cluster, from the 1-worker 1-CPU run:
``update + calls * (overhead + policy + (worker - policy) / W)``, where ``worker`` is one worker's sampling
time for a whole call, ``policy`` the part of it that evaluates the policy on the whole meta-batch (every
worker does that, whatever ``W``: it is what keeps the episodes identical to the local sampler's), measured
here separately, and ``overhead`` Ray's per-call dispatch and gathering.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from metarl.rundir import write_json_atomic


def _run(env: str, sampler: str, workers: int, iterations: int, worker_cpus: int | None = None) -> dict[str, Any]:
    from metarl.agents.maml_trpo import MAMLTRPO

    torch.manual_seed(0)
    algo = MAMLTRPO(env=env, seed=0, sampler=sampler, num_workers=workers, worker_cpus=worker_cpus)
    calls: list[dict[str, float]] = []
    sample = algo.sampler.sample

    def timed_sample(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        episodes = sample(*args, **kwargs)
        timing = dict(getattr(algo.sampler, "last_timing", {}) or {})
        timing["seconds"] = time.perf_counter() - start
        calls.append(timing)
        return episodes

    algo.sampler.sample = timed_sample
    rng = np.random.default_rng(0)
    algo.meta_train_step(rng)  # warm-up: worker start-up, backends
    calls.clear()
    start = time.perf_counter()
    for _ in range(iterations):
        algo.meta_train_step(rng)
    wall = (time.perf_counter() - start) / iterations
    per_call = len(calls) / iterations
    out = {"sampler": sampler, "workers": workers if sampler == "ray" else 0,
           "worker_cpus": getattr(algo.sampler, "worker_cpus", None), "iteration_seconds": wall,
           "sample_seconds": sum(c["seconds"] for c in calls) / iterations, "calls_per_iteration": per_call}
    if sampler == "ray":
        out["slowest_worker_seconds"] = sum(c["slowest_worker_seconds"] for c in calls) / iterations
        out["put_seconds"] = sum(c["put_seconds"] for c in calls) / iterations
        out["dispatch_seconds"] = out["sample_seconds"] - out["slowest_worker_seconds"]
    out["policy_seconds"] = _policy_seconds(algo) * per_call
    algo.sampler.close()
    return out


def _policy_seconds(algo: Any) -> float:
    """One call's policy evaluations on the whole meta-batch (horizon steps), as each worker does them."""
    cfg = algo.cfg
    obs = torch.zeros(cfg.meta_batch_size, cfg.episodes_per_task, *algo.sampler.observation_space.shape)
    params = {k: v.detach().expand(cfg.meta_batch_size, *v.shape).clone() for k, v in algo.meta_params().items()}
    act = algo.act_fn(params, batched=True)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(algo.sampler.horizon):
            act(obs, generator)
    return time.perf_counter() - start


def project(one_worker: dict[str, Any], workers: list[int]) -> list[dict[str, float]]:
    """Projected iteration time against workers from a 1-worker Ray measurement."""
    calls = one_worker["calls_per_iteration"]
    update = one_worker["iteration_seconds"] - one_worker["sample_seconds"]
    policy = one_worker["policy_seconds"] / calls
    worker = one_worker["slowest_worker_seconds"] / calls
    overhead = one_worker["dispatch_seconds"] / calls
    rows = []
    for w in workers:
        sample = calls * (overhead + policy + max(worker - policy, 0.0) / w)
        rows.append({"workers": w, "iteration_seconds": update + sample, "sample_seconds": sample})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="metarl/HalfCheetahVel-v0")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--project", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = [_run(args.env, "local", 1, args.iterations)]
    runs += [_run(args.env, "ray", w, args.iterations) for w in args.workers]
    runs.append(_run(args.env, "ray", 1, args.iterations, worker_cpus=1))  # a cluster worker's share: the projection
    local = runs[0]["iteration_seconds"]
    print(f"{args.env}, MAML-TRPO preset, {args.iterations} timed iterations after a warm-up, seconds per iteration")
    print(f"{'sampler':<12} {'iteration':>10} {'sampling':>10} {'workers':>10} {'dispatch':>10} {'vs local':>9}")
    for r in runs:
        name = "local" if r["sampler"] == "local" else f"ray {r['workers']}x{r['worker_cpus']}cpu"
        print(f"{name:<12} {r['iteration_seconds']:>10.2f} {r['sample_seconds']:>10.2f} "
              f"{r.get('slowest_worker_seconds', float('nan')):>10.2f} {r.get('dispatch_seconds', float('nan')):>10.2f} "
              f"{r['iteration_seconds'] / local:>8.2f}x")
    out: dict[str, Any] = {"env": args.env, "iterations": args.iterations, "runs": runs}
    one = runs[-1]
    out["projection"] = project(one, args.project)
    print("projection for 1-CPU workers (from the 1-worker, 1-CPU run): workers -> seconds per iteration")
    for row in out["projection"]:
        print(f"  {row['workers']:>4} -> {row['iteration_seconds']:.2f} (sampling {row['sample_seconds']:.2f})")
    if args.json:
        write_json_atomic(args.json, out, make_parents=True)
    return out


if __name__ == "__main__":
    main()
