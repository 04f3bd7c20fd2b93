#!/usr/bin/env python
"""Speed benchmarks that compare metarl against a reference implementation in the same process.

    python scripts/benchmark.py maml-sinusoid            # the adaptation core vs a per-task autograd loop

Subcommands:
    maml-sinusoid   one MAML sinusoid meta-iteration (meta-batch 25, K=10 support + 10 query points,
                    one second-order inner step, Adam update) with the shared adaptation core
                    (``metarl.adaptation.adapt_batch``, vmapped over tasks) against a reference that
                    loops over the tasks with ``torch.autograd.grad(..., create_graph=True)``. Both use
                    the same network, loss, data and optimiser, and their meta-gradients are checked
                    to agree before timing. Reports the per-iteration times and their ratio.

Timings alternate between the two implementations in several rounds and report medians, so a
machine shared with other jobs slows both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.func import vmap

from metarl.fewshot.learners import GradientLearner
from metarl.fewshot.networks import sinusoid_mlp
from metarl.fewshot.sinusoid import SinusoidTasks


def _maml_sinusoid_steps(meta_batch_size: int, shots: int, inner_lr: float, seed: int
                         ) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], float]]:
    """(core step, reference step, gradient-agreement check) sharing one model, optimiser and data."""
    learner = GradientLearner(sinusoid_mlp(generator=torch.Generator().manual_seed(seed)), "maml", inner_lr,
                              task="regression")
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    batches = [SinusoidTasks().sample(rng, meta_batch_size, shots, shots) for _ in range(16)]
    names = list(dict(learner.net.named_parameters()))

    def core_loss(i: int) -> torch.Tensor:
        b = batches[i % len(batches)]
        adapted = learner.adapt_tasks(b.support_inputs, b.support_labels, steps=1)
        return vmap(learner.loss)(adapted, (b.query_inputs, b.query_labels)).mean()

    def reference_loss(i: int) -> torch.Tensor:
        b = batches[i % len(batches)]
        params = dict(learner.net.named_parameters())
        total = 0.0
        for t in range(meta_batch_size):
            support_loss = learner.loss(params, (b.support_inputs[t], b.support_labels[t]))
            grads = torch.autograd.grad(support_loss, list(params.values()), create_graph=True)
            fast = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
            total = total + learner.loss(fast, (b.query_inputs[t], b.query_labels[t]))
        return total / meta_batch_size

    def step(loss_fn: Callable[[int], torch.Tensor]) -> Callable[[int], None]:
        def run(i: int) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(i).backward()
            optimizer.step()
        return run

    def gradient_gap() -> float:
        grads = []
        for loss_fn in (core_loss, reference_loss):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(0).backward()
            grads.append(torch.cat([learner.net.get_parameter(n).grad.flatten() for n in names]))
        optimizer.zero_grad(set_to_none=True)
        return float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())

    return step(core_loss), step(reference_loss), gradient_gap


def _time_per_iteration(step: Callable[[int], None], iterations: int) -> float:
    start = time.perf_counter()
    for i in range(iterations):
        step(i)
    return (time.perf_counter() - start) / iterations


def maml_sinusoid(args: argparse.Namespace) -> dict:
    """Time the core against the per-task autograd loop; returns the result dict."""
    torch.set_num_threads(args.threads)
    core, reference, gradient_gap = _maml_sinusoid_steps(args.meta_batch_size, args.shots, args.inner_lr, args.seed)
    gap = gradient_gap()
    if gap > 1e-4:
        raise RuntimeError(f"the core's meta-gradient differs from the reference's (relative gap {gap:.2e})")
    for i in range(args.warmup):
        core(i)
        reference(i)
    core_times, reference_times = [], []
    for _ in range(args.rounds):
        core_times.append(_time_per_iteration(core, args.iterations))
        reference_times.append(_time_per_iteration(reference, max(1, args.iterations // 5)))
    core_ms, reference_ms = 1e3 * statistics.median(core_times), 1e3 * statistics.median(reference_times)
    ratio = statistics.median(r / c for r, c in zip(reference_times, core_times))
    result = {
        "benchmark": "maml-sinusoid",
        "meta_batch_size": args.meta_batch_size, "shots": args.shots, "inner_steps": 1, "second_order": True,
        "threads": args.threads, "rounds": args.rounds,
        "core_ms_per_iteration": round(core_ms, 3), "reference_ms_per_iteration": round(reference_ms, 3),
        "speedup": round(ratio, 2), "meta_gradient_relative_gap": gap, "torch": torch.__version__,
    }
    print(f"MAML sinusoid meta-iteration (meta-batch {args.meta_batch_size}, K={args.shots}, 1 second-order step, "
          f"{args.threads} thread(s)):")
    print(f"  core (adapt_batch, vmap):       {core_ms:8.3f} ms")
    print(f"  reference (autograd.grad loop): {reference_ms:8.3f} ms")
    print(f"  speedup (median of {args.rounds} rounds): {ratio:.2f}x   (meta-gradients agree to {gap:.1e})")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)
    p = sub.add_parser("maml-sinusoid", help="adaptation core vs per-task autograd loop (MAML sinusoid)")
    p.add_argument("--meta-batch-size", type=int, default=25, help="tasks per meta-iteration")
    p.add_argument("--shots", type=int, default=10, help="support (and query) points per task")
    p.add_argument("--inner-lr", type=float, default=0.01, help="inner step size")
    p.add_argument("--iterations", type=int, default=200, help="core meta-iterations per round (reference: a fifth)")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (medians are reported)")
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations of each first")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both implementations")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the tasks")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--min-speedup", type=float, default=0.0, help="exit with status 1 below this speedup")
    p.set_defaults(run=maml_sinusoid, check="speedup")
    args = parser.parse_args(argv)
    result = args.run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result[args.check] < args.min_speedup:
        print(f"speedup {result[args.check]:.2f}x is below the required {args.min_speedup}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
