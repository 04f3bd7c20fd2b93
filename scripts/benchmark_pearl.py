#!/usr/bin/env python
"""PEARL's SAC updates per second (the cost of PEARL on a CPU), for each family preset and for the paper's
network and batch sizes, in one process, with the collection's environment steps per second beside them.

Each configuration collects one meta-iteration's data (so the buffers are filled as in training), then
times ``--updates`` SAC updates (after a warm-up of 5). The ratio column is the preset's rate over the
paper-size rate on the same family, measured in the same process.

    python scripts/benchmark_pearl.py [--updates 100 --threads 1 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import metarl
from metarl.agents.pearl import PEARL

FAMILIES = ("metarl/Navigation2D-v0", "metarl/SparsePointRobot-v0", "metarl/HalfCheetahVel-v0")
#: the public code's network and batch sizes (configs/default.py)
PAPER = dict(hidden_sizes=(300, 300, 300), encoder_hidden_sizes=(200, 200, 200), meta_batch_size=16,
             batch_size=256, context_size=64)


def updates_per_second(env: str, updates: int, **overrides) -> tuple[float, float, dict]:
    """(SAC updates per second, collection env steps per second, the sizes used) for ``env``'s preset + overrides."""
    torch.manual_seed(0)
    algo = PEARL(env=env, gradient_steps=1, **overrides)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    algo.meta_train_step(rng)  # fills the buffers (initial + one iteration's episodes)
    fps = algo.env_steps / (time.perf_counter() - start)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        algo._update(generator)
    start = time.perf_counter()
    for _ in range(updates):
        algo._update(generator)
    sizes = {k: getattr(algo.cfg, k) for k in ("hidden_sizes", "meta_batch_size", "batch_size", "context_size")}
    return updates / (time.perf_counter() - start), fps, sizes


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the rows (also printed as a Markdown table)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s), metarl {metarl.__version__}")
    print("| family | networks, tasks x batch, context | updates/s (preset) | updates/s (paper sizes) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for env in args.families:
        preset_rate, _, sizes = updates_per_second(env, args.updates)
        paper_rate, _, _ = updates_per_second(env, args.updates, **PAPER)
        rows.append({"env": env, **sizes, "preset_updates_per_second": preset_rate,
                     "paper_updates_per_second": paper_rate})
        print(f"| {env} | {list(sizes['hidden_sizes'])}, {sizes['meta_batch_size']} x {sizes['batch_size']}, "
              f"{sizes['context_size']} | {preset_rate:.1f} | {paper_rate:.1f} | {preset_rate / paper_rate:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "updates": args.updates, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
