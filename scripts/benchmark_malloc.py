#!/usr/bin/env python
"""Cost of glibc's default mmap threshold on a MAML-TRPO HalfCheetah iteration, with and without
:func:`metarl.system.keep_freed_memory` (which ``metarl train`` and ``metarl fewshot`` call).

``mallopt`` changes the whole process, so each variant runs in its own child process, one after the
other, on one thread: the same meta-iterations (same seed) are timed after one warm-up iteration.
Reported per variant: wall, user and system seconds per iteration and minor page faults.

    python scripts/benchmark_malloc.py [--env metarl/HalfCheetahDir-v0 --tasks 40 --episodes 20 --iterations 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from metarl.agents.maml import MAMLConfig, MAMLTRPO
from metarl.system import keep_freed_memory
env, tasks, episodes, iterations, tuned = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
applied = keep_freed_memory() if tuned else False
torch.manual_seed(0)
algo = MAMLTRPO(MAMLConfig(env=env, meta_batch_size=tasks, episodes_per_task=episodes, fisher_subsample=4))
rng = np.random.default_rng(0)
algo.meta_train_step(rng)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(iterations):
    algo.meta_train_step(rng)
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
print(json.dumps({"applied": applied, "wall_s": wall / iterations, "user_s": (r1.ru_utime - r0.ru_utime) / iterations,
                  "sys_s": (r1.ru_stime - r0.ru_stime) / iterations,
                  "minor_faults": (r1.ru_minflt - r0.ru_minflt) / iterations}))
"""


def run(args: argparse.Namespace, tuned: bool) -> dict:
    """One child process; returns its per-iteration measurements."""
    out = subprocess.run([sys.executable, "-c", CHILD, args.env, str(args.tasks), str(args.episodes),
                          str(args.iterations), "1" if tuned else "0"],
                         check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="metarl/HalfCheetahDir-v0")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args(argv)
    result = {"glibc default": run(args, tuned=False), "keep_freed_memory": run(args, tuned=True)}
    for name, r in result.items():
        print(f"{name:>18}: {r['wall_s']:6.2f} s wall, {r['user_s']:6.2f} s user, {r['sys_s']:5.2f} s system, "
              f"{r['minor_faults']:>10,.0f} minor page faults per iteration")
    speedup = result["glibc default"]["wall_s"] / result["keep_freed_memory"]["wall_s"]
    print(f"wall-clock ratio default / keep_freed_memory: {speedup:.2f}x")
    return result


if __name__ == "__main__":
    main()
