#!/usr/bin/env python
"""Seconds per MAML-TRPO meta-iteration on Navigation2D (the README's run) by torch thread count, on an idle
machine and with one competing CPU-bound process, in one script run.

The competing process is a NumPy loop on one core (what a second training run or a browser tab does to a
2-core laptop). Each condition runs ``--iterations`` meta-iterations of the README's settings after one
warm-up iteration, in a fresh subprocess, and reports the median seconds per iteration.

    python scripts/benchmark_threads.py [--threads 1 2 --iterations 5 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

WORKER = """
import sys, time, numpy as np, torch
import metarl
torch.set_num_threads(int(sys.argv[1]))
algo = metarl.make_algorithm("maml-trpo", env="metarl/Navigation2D-v0", seed=0)
rng = np.random.default_rng(0)
algo.meta_train_step(rng)
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    algo.meta_train_step(rng)
    times.append(time.perf_counter() - start)
print(" ".join(map(str, times)))
"""

COMPETITOR = """
import numpy as np, time
a = np.random.default_rng(0).random((300, 300))
end = time.time() + 3600
while time.time() < end:
    a = np.tanh(a @ a.T / 300.0)
"""


def measure(threads: int, iterations: int, loaded: bool) -> float:
    competitor = None
    if loaded:
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        import os

        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env={**os.environ, **env})
        time.sleep(1.0)
    try:
        out = subprocess.run([sys.executable, "-c", WORKER, str(threads), str(iterations)], capture_output=True,
                             text=True, check=True).stdout
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return statistics.median(float(x) for x in out.split())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    rows = {}
    print("threads | idle s/iter | one competing process s/iter | slowdown")
    for threads in args.threads:
        idle = measure(threads, args.iterations, loaded=False)
        loaded = measure(threads, args.iterations, loaded=True)
        rows[threads] = {"idle": idle, "loaded": loaded}
        print(f"{threads:7d} | {idle:11.2f} | {loaded:28.2f} | {loaded / idle:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
