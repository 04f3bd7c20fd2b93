#!/usr/bin/env python
"""Check the CUDA path (``--device cuda``) against the CPU on a machine with a GPU.

    python scripts/check_cuda.py                      # MAML-TRPO, RL^2, PEARL on small settings
    python scripts/check_cuda.py --json runs/check_cuda.json --iterations 5
    python scripts/check_cuda.py --checks maml-trpo-halfcheetah  # the HalfCheetahDir preset's outer step

For each algorithm, two runs from the same seed, one with ``device="cpu"`` and one with ``device="cuda"``,
take one meta-iteration from the same generator state. Sampling runs on the CPU in both (the acting policy is
a CPU copy with the same weights and the same noise). The CUDA run is given the episodes the CPU run sampled
(it samples its own too, and ``episode_drift`` reports how far they moved: after a CUDA inner step the adapted
weights differ from the CPU's in the last bits, and a MuJoCo episode amplifies that to a different episode, so
without the replay the two steps would be two different policy-gradient estimates). The update's step
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

CHECKS: dict[str, tuple[str, dict[str, Any]]] = {  # name: (algorithm, settings on top of its preset)
    "maml-trpo": ("maml-trpo", {"env": "metarl/HalfCheetahVel-v0", "meta_batch_size": 10, "episodes_per_task": 5}),
    "rl2-ppo": ("rl2-ppo", {"env": "metarl/HalfCheetahVel-v0", "meta_batch_size": 8, "num_minibatches": 2}),
    "pearl": ("pearl", {"env": "metarl/Navigation2D-v0", "train_tasks": 10, "tasks_per_iteration": 5,
                        "gradient_steps": 20}),
    # the HalfCheetahDir preset as trained (40 tasks x 20 episodes, 64x64 tanh policy, Fisher subsample 4)
    "maml-trpo-halfcheetah": ("maml-trpo", {"env": "metarl/HalfCheetahDir-v0"}),
}
DEFAULT_CHECKS = ["maml-trpo", "rl2-ppo", "pearl"]


def _build(name: str, device: str) -> Any:
    from metarl.registry import make_algorithm

    algo, settings = CHECKS[name]
    return make_algorithm(algo, seed=0, device=device, **settings)  # seeds the initialisation


def _flat_params(algorithm: Any) -> torch.Tensor:
    modules = [getattr(algorithm, name) for name in ("policy", "net", "encoder", "critic")
               if isinstance(getattr(algorithm, name, None), torch.nn.Module)]
    return torch.cat([p.detach().cpu().double().flatten() for m in modules for p in m.parameters()])


def _record_episodes(algorithm: Any, recorded: list[Any]) -> None:
    """Keep every batch of episodes ``algorithm`` samples in ``recorded``."""
    sample = algorithm.sampler.sample

    def recording(*args: Any, **kwargs: Any) -> Any:
        recorded.append(sample(*args, **kwargs))
        return recorded[-1]

    algorithm.sampler.sample = recording


def _replay_episodes(algorithm: Any, recorded: list[Any], drift: list[float]) -> None:
    """Give ``algorithm`` the ``recorded`` batches in order instead of its own (still sampled, so generators
    advance alike), appending the largest observation gap between its own and the recorded ones to ``drift``."""
    sample, batches = algorithm.sampler.sample, iter(recorded)

    def replaying(*args: Any, **kwargs: Any) -> Any:
        own, given = sample(*args, **kwargs), next(batches)
        drift.append(float((own.observations - given.observations).abs().max()))
        return given

    algorithm.sampler.sample = replaying


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def check(name: str, iterations: int, tolerance: float, devices: tuple[str, str] = ("cpu", "cuda")
          ) -> dict[str, Any]:
    """One check: the meta-update on ``devices[1]`` against ``devices[0]``, and their timings (whole
    iterations, and where the algorithm reports them, the sampling and the MAML outer step alone)."""
    steps, timings, recorded, drift = {}, {}, [], []
    for index, device in enumerate(devices):
        algorithm = _build(name, device)
        before = _flat_params(algorithm)
        sample = algorithm.sampler.sample
        if index == 0:
            _record_episodes(algorithm, recorded)
        else:
            _replay_episodes(algorithm, recorded, drift)
        rng = np.random.default_rng(0)
        algorithm.meta_train_step(rng)
        algorithm.sampler.sample = sample
        steps[device] = _flat_params(algorithm) - before
        metrics = []
        start = time.perf_counter()
        for _ in range(iterations):
            metrics.append(algorithm.meta_train_step(rng))
        if device == "cuda":
            torch.cuda.synchronize()
        timings[device] = {
            "seconds_per_iteration": (time.perf_counter() - start) / max(iterations, 1),
            **{f"{key}_seconds": _mean([m[f"time/{key}_seconds"] for m in metrics if f"time/{key}_seconds" in m])
               for key in ("sampling", "outer_step")}}
    reference, other = (steps[d] for d in devices)
    error = float((other - reference).norm() / reference.norm().clamp_min(1e-12))
    return {"check": name, "algo": CHECKS[name][0], **CHECKS[name][1], "relative_step_error": error,
            "episode_drift": drift, "passed": error <= tolerance,
            **{f"{d}_{k}": v for d in devices for k, v in timings[d].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", nargs="+", default=DEFAULT_CHECKS, choices=list(CHECKS),
                        help="what to check (maml-trpo-halfcheetah: the full HalfCheetahDir preset, slow on a CPU)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a machine with a GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = [check(name, args.iterations, args.tolerance) for name in args.checks]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    print(f"{'check':<22} {'step error':>10} {'drift':>8}  {'s/iteration':>13}  {'s sampling':>13}  "
          f"{'s outer step':>13}  cpu/cuda on {torch.cuda.get_device_name()}")
    for r in results:
        cells = [f"{seconds(r[f'cpu_{k}'])}/{seconds(r[f'cuda_{k}'])}"
                 for k in ("seconds_per_iteration", "sampling_seconds", "outer_step_seconds")]
        drift = max(r["episode_drift"], default=0.0)
        print(f"{r['check']:<22} {r['relative_step_error']:>10.2e} {drift:>8.1e}  {cells[0]:>13}  {cells[1]:>13}  "
              f"{cells[2]:>13}  {'ok' if r['passed'] else 'FAILED'}")
    if args.json:
        write_json_atomic(args.json, {"device": torch.cuda.get_device_name(), "results": results}, make_parents=True)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
