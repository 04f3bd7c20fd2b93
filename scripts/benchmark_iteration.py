#!/usr/bin/env python
"""Seconds per meta-iteration of a family's preset, and where they go, for settings side by side in one process.

    python scripts/benchmark_iteration.py --env metarl/Navigation2D-v0
    python scripts/benchmark_iteration.py --env metarl/HalfCheetahDir-v0 --variant fisher_subsample=10

Each variant (the preset, then each ``--variant k=v[,k=v...]`` on top of it) builds the algorithm from the same
seed, runs ``--warmup`` untimed meta-iterations, then ``--iterations`` timed ones; the variants take turns in
``--rounds`` rounds, so a machine shared with other jobs slows them alike. Reports the medians of the
iteration, its sampling and (MAML) its outer step, from the metrics the algorithm logs (``time/*``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metarl.registry import make_algorithm

TIMES = ("iteration_seconds", "sampling_seconds", "outer_step_seconds")


def _variant(text: str) -> dict[str, Any]:
    """``"k=v,k2=v2"`` -> settings (values parsed as YAML: numbers, booleans, lists)."""
    settings = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{item!r}: write a setting as name=value")
        settings[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="maml-trpo")
    parser.add_argument("--env", default="metarl/Navigation2D-v0")
    parser.add_argument("--variant", type=_variant, action="append", default=[],
                        help="settings on top of the preset, name=value[,name=value]; repeatable")
    parser.add_argument("--iterations", type=int, default=3, help="timed meta-iterations per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [{}, *args.variant]
    runs = []
    for settings in variants:
        try:
            algorithm = make_algorithm(args.algo, env=args.env, seed=args.seed, **settings)
        except (ValueError, TypeError, KeyError) as exc:  # an unknown algorithm, family or setting
            parser.error(str(exc).strip("'\""))
        rng = np.random.default_rng(args.seed)
        for _ in range(args.warmup):
            algorithm.meta_train_step(rng)
        runs.append((algorithm, rng))
    samples: list[dict[str, list[float]]] = [{key: [] for key in TIMES} for _ in variants]
    for _ in range(args.rounds):
        for (algorithm, rng), times in zip(runs, samples):
            for _ in range(args.iterations):
                metrics = algorithm.meta_train_step(rng)
                for key in TIMES:
                    if f"time/{key}" in metrics:
                        times[key].append(metrics[f"time/{key}"])
    results = []
    print(f"{args.algo} on {args.env}, {args.threads} thread(s): medians of {args.rounds * args.iterations} "
          f"meta-iterations (seconds)")
    print(f"  {'variant':<40} {'iteration':>9} {'sampling':>9} {'outer step':>10}")
    for settings, times in zip(variants, samples):
        medians = {key: statistics.median(v) if v else None for key, v in times.items()}
        results.append({"settings": settings, **medians})
        name = ", ".join(f"{k}={v}" for k, v in settings.items()) or "preset"
        cells = ["-" if medians[k] is None else f"{medians[k]:.3f}" for k in TIMES]
        print(f"  {name:<40} {cells[0]:>9} {cells[1]:>9} {cells[2]:>10}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"algo": args.algo, "env": args.env, "threads": args.threads,
                                         "torch": torch.__version__, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
