#!/usr/bin/env python
"""Speed benchmarks that compare metarl against a reference implementation in the same process.

    python scripts/benchmark.py maml-sinusoid            # the adaptation core vs a per-task autograd loop

Subcommands:
    maml-sinusoid   one MAML sinusoid meta-iteration (meta-batch 25, K=10 support + 10 query points,
                    one second-order inner step, Adam update) as meta-training runs it
                    (``GradientLearner.query_loss``: a regression MLP's inner step in closed form,
                    ``metarl.mlp_gradients``) against a per-task ``torch.autograd.grad(..., create_graph=True)``
                    loop, a hand-written ``torch.func`` vmap, and torchopt's and higher's loops when installed
                    (the ``bench`` extra). All use the same network, loss, data and optimiser, and their
                    meta-gradients are checked to agree before timing.
    maml-omniglot   the same for Conv-4 20-way 1-shot (the core loops over tasks on the CPU, vmaps on CUDA);
                    ``--device cuda`` runs it on a GPU.

Timings alternate between the implementations in several rounds and report medians, so a
machine shared with other jobs slows all alike.
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
import torch.nn.functional as F
from torch.func import grad as torch_grad
from torch.func import vmap

from metarl.fewshot.data import EpisodeBatch
from metarl.fewshot.learners import GradientLearner
from metarl.fewshot.networks import ConvClassifier, sinusoid_mlp
from metarl.fewshot.sinusoid import SinusoidTasks


def _implementations(learner: GradientLearner, batches: list, inner_lr: float, ways: int | None
                     ) -> dict[str, Callable[[int], torch.Tensor]]:
    """The meta-loss of batch ``i`` (one second-order inner step per task, then the mean query loss) by each
    implementation available: the core, a per-task ``autograd.grad`` loop, a hand-written ``torch.func`` vmap,
    and for a plain module (no head expansion) torchopt's and higher's per-task loops when installed."""
    def core(i: int) -> torch.Tensor:  # what meta-training runs: the learner's query loss through the core
        b = batches[i % len(batches)]
        return learner.query_loss(b.support_inputs, b.support_labels, b.query_inputs, b.query_labels, steps=1,
                                  multi_step=False, ways=ways)[0]

    def autograd_loop(i: int) -> torch.Tensor:
        b = batches[i % len(batches)]
        params = learner.initial_parameters(ways)
        total = 0.0
        for t in range(len(b.support_inputs)):
            support_loss = learner.loss(params, (b.support_inputs[t], b.support_labels[t]))
            grads = torch.autograd.grad(support_loss, list(params.values()), create_graph=True)
            fast = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
            total = total + learner.loss(fast, (b.query_inputs[t], b.query_labels[t]))
        return total / len(b.support_inputs)

    def task_loss(params: dict, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
                  ) -> torch.Tensor:
        grads = torch_grad(lambda p: learner.loss(p, (xs, ys)))(params)
        return learner.loss({n: params[n] - inner_lr * grads[n] for n in params}, (xq, yq))

    def handwritten_vmap(i: int) -> torch.Tensor:
        b = batches[i % len(batches)]
        losses = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(learner.initial_parameters(ways), b.support_inputs,
                                                             b.support_labels, b.query_inputs, b.query_labels)
        return losses.mean()

    out = {"core (GradientLearner.query_loss)": core, "autograd.grad loop": autograd_loop,
           "hand-written torch.func vmap": handwritten_vmap}
    if ways is not None:
        return out
    net = learner.net
    try:
        import torchopt

        def torchopt_loop(i: int) -> torch.Tensor:
            b = batches[i % len(batches)]
            inner = torchopt.MetaSGD(net, lr=inner_lr)
            state = torchopt.extract_state_dict(net)
            total = 0.0
            for t in range(len(b.support_inputs)):
                inner.step(F.mse_loss(net(b.support_inputs[t]), b.support_labels[t]))
                total = total + F.mse_loss(net(b.query_inputs[t]), b.query_labels[t])
                torchopt.recover_state_dict(net, state)
            return total / len(b.support_inputs)

        out["torchopt MetaSGD loop"] = torchopt_loop
    except ImportError:
        print("torchopt is not installed, not timed (pip install 'metarl[bench]')", file=sys.stderr)
    try:
        import higher

        def higher_loop(i: int) -> torch.Tensor:
            b = batches[i % len(batches)]
            inner = torch.optim.SGD(net.parameters(), lr=inner_lr)
            total = 0.0
            for t in range(len(b.support_inputs)):
                with higher.innerloop_ctx(net, inner, copy_initial_weights=False) as (fnet, diffopt):
                    diffopt.step(F.mse_loss(fnet(b.support_inputs[t]), b.support_labels[t]))
                    total = total + F.mse_loss(fnet(b.query_inputs[t]), b.query_labels[t])
            return total / len(b.support_inputs)

        out["higher innerloop_ctx loop"] = higher_loop
    except ImportError:
        print("higher is not installed, not timed (pip install 'metarl[bench]')", file=sys.stderr)
    return out


def _setup(name: str, args: argparse.Namespace) -> tuple[GradientLearner, list, int | None]:
    """The learner and 16 fixed meta-batches of benchmark ``name``."""
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    if name == "maml-sinusoid":
        learner = GradientLearner(sinusoid_mlp(generator=generator), "maml", args.inner_lr, task="regression")
        return learner, [SinusoidTasks().sample(rng, args.meta_batch_size, args.shots, args.shots)
                         for _ in range(16)], None
    net = ConvClassifier(28, hidden=64, generator=generator, downsample=args.downsample)
    learner = GradientLearner(net, "maml", args.inner_lr, task="classification")
    n_support, n_query = args.ways * args.shots, args.ways * 5

    def episodes() -> EpisodeBatch:
        images = torch.as_tensor(rng.random((args.meta_batch_size, n_support + n_query, 1, 28, 28)),
                                 dtype=torch.float32)
        labels = torch.arange(args.ways).repeat_interleave(torch.tensor([args.shots] * args.ways))
        query_labels = torch.arange(args.ways).repeat_interleave(5)
        return EpisodeBatch(images[:, :n_support], labels.expand(args.meta_batch_size, -1),
                            images[:, n_support:], query_labels.expand(args.meta_batch_size, -1))

    return learner, [episodes() for _ in range(4)], args.ways


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_per_iteration(step: Callable[[int], None], iterations: int, device: str = "cpu") -> float:
    _synchronize(device)
    start = time.perf_counter()
    for i in range(iterations):
        step(i)
    _synchronize(device)
    return (time.perf_counter() - start) / iterations


def maml_comparison(args: argparse.Namespace) -> dict:
    """Time every implementation of one MAML meta-iteration (forward, backward, Adam step) in this process,
    alternating in rounds, after checking that their meta-gradients agree; returns the result dict."""
    torch.set_num_threads(args.threads)
    learner, batches, ways = _setup(args.benchmark, args)
    learner.to(args.device)
    batches = [type(b)(*(t.to(args.device) for t in b)) for b in batches]
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    losses = _implementations(learner, batches, args.inner_lr, ways)
    names = [n for n, p in learner.net.named_parameters()]

    def gradient(loss_fn: Callable[[int], torch.Tensor]) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(0).backward()
        out = torch.cat([learner.net.get_parameter(n).grad.flatten() for n in names])
        optimizer.zero_grad(set_to_none=True)
        return out

    def gaps_to_the_loop() -> dict[str, float]:
        reference = gradient(losses["autograd.grad loop"])
        return {name: float((gradient(fn) - reference).abs().max() / reference.abs().max())
                for name, fn in losses.items()}

    tf32_gaps = None
    if args.device.startswith("cuda"):  # cuDNN convolutions default to TF32 (10-bit mantissa): report their gap,
        tf32_gaps = gaps_to_the_loop()  # then check and time in full float32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    gaps = gaps_to_the_loop()
    bad = {name: gap for name, gap in gaps.items() if gap > args.tolerance}
    if bad:
        print(f"meta-gradients differ from the autograd loop's by more than {args.tolerance}: {bad}", file=sys.stderr)

    def step(loss_fn: Callable[[int], torch.Tensor]) -> Callable[[int], None]:
        def run(i: int) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(i).backward()
            optimizer.step()
        return run

    steps = {name: step(fn) for name, fn in losses.items()}
    for name, run in steps.items():
        for i in range(args.warmup):
            run(i)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, run in steps.items():
            iterations = args.iterations if name.startswith("core") else max(1, args.iterations // 5)
            times[name].append(_time_per_iteration(run, iterations, args.device))
    core = "core (GradientLearner.query_loss)"
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / c for a, c in zip(t, times[core])) for name, t in times.items()}
    shape = (f"meta-batch {args.meta_batch_size}, K={args.shots}" if ways is None else
             f"Conv-4 ({args.downsample}), {ways}-way {args.shots}-shot, meta-batch {args.meta_batch_size}")
    where = (f"{args.threads} CPU thread(s)" if args.device == "cpu" else
             f"{args.device} ({torch.cuda.get_device_name(args.device)})")
    print(f"{args.benchmark}: one meta-iteration ({shape}, 1 second-order step), {where}, median of {args.rounds} "
          "rounds")
    for name in steps:
        tf32 = "" if tf32_gaps is None else f", with TF32 {tf32_gaps[name]:.1e}"
        print(f"  {name:<30} {ms[name]:9.3f} ms  {ratio[name]:6.2f}x the core  (gradient gap {gaps[name]:.1e}{tf32})")
    return {"benchmark": args.benchmark, "meta_batch_size": args.meta_batch_size, "shots": args.shots,
            "ways": ways, "threads": args.threads, "device": args.device, "rounds": args.rounds, "ms_per_iteration": ms,
            "times_the_core": ratio, "meta_gradient_relative_gap": gaps,
            "meta_gradient_relative_gap_tf32": tf32_gaps, "gradients_agree": not bad, "torch": torch.__version__,
            "speedup": ratio["autograd.grad loop"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, help_text, defaults in (
            ("maml-sinusoid", "MAML sinusoid: the core vs an autograd loop, a hand-written vmap, torchopt, higher",
             {"meta_batch_size": 25, "shots": 10, "inner_lr": 0.01, "iterations": 200}),
            ("maml-omniglot", "MAML Omniglot (Conv-4, 20-way 1-shot): the core vs an autograd loop and a vmap",
             {"meta_batch_size": 8, "shots": 1, "inner_lr": 0.4, "iterations": 10})):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--meta-batch-size", type=int, default=defaults["meta_batch_size"], help="tasks per iteration")
        p.add_argument("--shots", type=int, default=defaults["shots"], help="support points (examples) per task "
                                                                          "(class)")
        p.add_argument("--ways", type=int, default=20, help="maml-omniglot: classes per episode")
        p.add_argument("--downsample", choices=("stride", "maxpool"), default="maxpool", help="maml-omniglot: Conv-4")
        p.add_argument("--inner-lr", type=float, default=defaults["inner_lr"], help="inner step size")
        p.add_argument("--iterations", type=int, default=defaults["iterations"],
                       help="core meta-iterations per round (the others: a fifth)")
        p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (medians are reported)")
        p.add_argument("--warmup", type=int, default=3, help="untimed iterations of each first")
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every implementation")
        p.add_argument("--device", default="cpu", help="where the networks and the data live (cpu, cuda, cuda:N)")
        p.add_argument("--seed", type=int, default=0, help="seed of the network and the tasks")
        p.add_argument("--json", type=Path, default=None, help="also write the result here")
        p.add_argument("--tolerance", type=float, default=1e-4,
                       help="largest meta-gradient gap to the autograd loop (relative to its largest entry)")
        p.add_argument("--min-speedup", type=float, default=0.0,
                       help="exit with status 1 below this speedup over the autograd loop")
        p.set_defaults(run=maml_comparison, check="speedup")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA device; use --device cpu")
    result = args.run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not result["gradients_agree"]:
        return 1
    if result[args.check] < args.min_speedup:
        print(f"speedup {result[args.check]:.2f}x is below the required {args.min_speedup}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
