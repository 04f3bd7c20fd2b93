#!/usr/bin/env python
"""Check the CUDA path (``--device cuda``) against the CPU on a machine with a GPU.

    python scripts/check_cuda.py                      # MAML-TRPO, RL^2, PEARL on small settings
    python scripts/check_cuda.py --json runs/check_cuda.json --iterations 5

For each algorithm, two runs from the same seed, one with ``device="cpu"`` and one with ``device="cuda"``,
take one meta-iteration from the same generator state. Sampling runs on the CPU in both (the acting policy is
a CPU copy with the same weights and the same noise), so both see the same episodes; the update's step
``new - old parameters`` is the meta-gradient step, and the check is that the CUDA step equals the CPU one to
``--tolerance`` (default 1e-4) relative to its size. Then ``--iterations`` timed iterations on each device.
Exit status 1 if a check fails; 2 without CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch

from metarl.rundir import write_json_atomic

RUNS: dict[str, dict[str, Any]] = {
    "maml-trpo": {"env": "metarl/HalfCheetahVel-v0", "meta_batch_size": 10, "episodes_per_task": 5},
    "rl2-ppo": {"env": "metarl/HalfCheetahVel-v0", "meta_batch_size": 8, "num_minibatches": 2},
    "pearl": {"env": "metarl/Navigation2D-v0", "train_tasks": 10, "tasks_per_iteration": 5, "gradient_steps": 20},
}


def _build(algo: str, device: str) -> Any:
    from metarl.launcher import make_algorithm

    return make_algorithm(algo, seed=0, device=device, **RUNS[algo])  # seeds the initialisation


def _flat_params(algorithm: Any) -> torch.Tensor:
    modules = [getattr(algorithm, name) for name in ("policy", "net", "encoder", "critic")
               if isinstance(getattr(algorithm, name, None), torch.nn.Module)]
    return torch.cat([p.detach().cpu().double().flatten() for m in modules for p in m.parameters()])


def check(algo: str, iterations: int, tolerance: float, devices: tuple[str, str] = ("cpu", "cuda")
          ) -> dict[str, Any]:
    """One algorithm's check: the meta-update on ``devices[1]`` against ``devices[0]``, and their timings."""
    steps, seconds = {}, {}
    for device in devices:
        algorithm = _build(algo, device)
        before = _flat_params(algorithm)
        rng = np.random.default_rng(0)
        algorithm.meta_train_step(rng)
        steps[device] = _flat_params(algorithm) - before
        start = time.perf_counter()
        for _ in range(iterations):
            algorithm.meta_train_step(rng)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds[device] = (time.perf_counter() - start) / max(iterations, 1)
    reference, other = (steps[d] for d in devices)
    error = float((other - reference).norm() / reference.norm().clamp_min(1e-12))
    return {"algo": algo, **RUNS[algo], "relative_step_error": error, "passed": error <= tolerance,
            "cpu_seconds_per_iteration": seconds[devices[0]], "cuda_seconds_per_iteration": seconds[devices[1]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a machine with a GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = [check(algo, args.iterations, args.tolerance) for algo in args.algos]
    print(f"{'algo':<10} {'step error':>11} {'cpu s/it':>9} {'cuda s/it':>10}  {torch.cuda.get_device_name()}")
    for r in results:
        print(f"{r['algo']:<10} {r['relative_step_error']:>11.2e} {r['cpu_seconds_per_iteration']:>9.2f} "
              f"{r['cuda_seconds_per_iteration']:>10.2f}  {'ok' if r['passed'] else 'FAILED'}")
    if args.json:
        write_json_atomic(args.json, {"device": torch.cuda.get_device_name(), "results": results}, make_parents=True)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
