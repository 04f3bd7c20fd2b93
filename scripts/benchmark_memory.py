#!/usr/bin/env python
"""Cost of acting step by step with RL^2's memories over a long trial: the GRU, the transformer with its
key/value cache, and the transformer recomputing its whole context at every step, in one process.

The trial is the Bernoulli bandit's (k=5, n=500 pulls: 500 steps) with the rl2-transformer preset's network
(2 blocks, width 64, 4 heads) and rl2-ppo's GRU (128 units); one torch thread. For each memory it reports the
milliseconds of one action at positions 1-100, 201-300 and 401-500 of the trial, and of the whole trial, for
``--batch`` trials at once (1: ``metarl.load_policy(DIR).adapt(...)``'s single env; 256: the sampler's meta-batch).
A cost that grows linearly with the context keeps the later blocks' per-step times within a small factor of the
first's; recomputation grows with the context's square over the trial.

With ``--update`` it also times one PPO pass (forward and backward) of the transformer over whole long trials
with an attention window (``--update-trials`` trials of ``--update-steps`` steps, ``--window``; the defaults are a
minibatch of the ML10 preset: 5 trials of 10 x 500 steps, window 500), computed in bands against the masked
``T x T`` attention, in the same process, and prints ``masked / banded <ratio>x`` (the speed-up) and their largest difference.

    python scripts/benchmark_memory.py [--batch 1 256] [--update] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import torch

from metarl.agents.rl2_policy import RecurrentActorCritic
from metarl.agents.rl2_transformer import TransformerActorCritic
from metarl.rundir import write_json_atomic

STEPS = 500
BLOCKS = ((0, 100), (200, 300), (400, 500))


def _trial(step: Any, inputs: torch.Tensor) -> list[float]:
    """Seconds of each of the trial's steps."""
    times = []
    with torch.no_grad():
        for t in range(inputs.shape[1]):
            start = time.perf_counter()
            step(t, inputs[:, t])
            times.append(time.perf_counter() - start)
    return times


def measure(batch: int, recompute_steps: int) -> dict[str, Any]:
    space = gym.spaces.Discrete(5)
    input_dim = 1 + 5 + 1 + 1  # observation, one-hot previous action, previous reward, done flag
    torch.manual_seed(0)
    inputs = torch.randn(batch, STEPS, input_dim)
    gru = RecurrentActorCritic(input_dim, space, 128).eval()
    transformer = TransformerActorCritic(input_dim, space, width=64, layers=2, heads=4, max_length=STEPS).eval()
    out: dict[str, Any] = {}

    state = {"gru": gru.initial_state(batch), "cache": transformer.initial_state(batch)}

    def gru_step(t: int, x: torch.Tensor) -> None:
        _, state["gru"] = gru.step(x, state["gru"])

    def cached_step(t: int, x: torch.Tensor) -> None:
        _, state["cache"] = transformer.step(x, state["cache"])

    def recompute_step(t: int, x: torch.Tensor) -> None:
        transformer(inputs[:, :t + 1])

    for name, step, steps in (("gru", gru_step, STEPS), ("transformer_cached", cached_step, STEPS),
                              ("transformer_recomputed", recompute_step, recompute_steps)):
        _trial(step, inputs[:, :5])  # warm-up
        state.update(gru=gru.initial_state(batch), cache=transformer.initial_state(batch))
        times = _trial(step, inputs[:, :steps])
        out[name] = {f"ms_per_step_{a + 1}_{b}": 1e3 * sum(times[a:b]) / len(times[a:b])
                     for a, b in BLOCKS if b <= steps}
        if steps == STEPS:
            out[name]["trial_seconds"] = sum(times)
    return out


def measure_update(trials: int, steps: int, window: int, repeats: int = 2) -> dict[str, Any]:
    """Seconds of a forward and backward pass over ``trials`` whole trials, banded and masked (best of ``repeats``),
    and the largest difference of their action means."""
    space = gym.spaces.Box(-1.0, 1.0, (4,))
    input_dim = 39 + 4 + 1 + 1  # a Meta-World trial's RL^2 inputs
    torch.manual_seed(0)
    net = TransformerActorCritic(input_dim, space, width=64, layers=2, heads=4, context_length=window)
    inputs = torch.randn(trials, steps, input_dim)
    out: dict[str, Any] = {}
    means = {}
    for name, banded in (("banded", True), ("masked", False)):
        net.banded = banded
        best = float("inf")
        for _ in range(repeats):
            net.zero_grad()
            start = time.perf_counter()
            dist, values, _ = net(inputs)
            (dist.mean.sum() + values.sum()).backward()
            best = min(best, time.perf_counter() - start)
        means[name] = dist.mean.detach()
        out[f"{name}_seconds"] = best
    out["max_abs_difference"] = float((means["banded"] - means["masked"]).abs().max())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256], help="trials acted on at once")
    parser.add_argument("--recompute-steps", type=int, default=STEPS,
                        help="steps of the recomputing transformer timed (it is the slow one)")
    parser.add_argument("--update", action="store_true", help="also time a PPO pass over long windowed trials")
    parser.add_argument("--update-trials", type=int, default=5, help="trials in that pass")
    parser.add_argument("--update-steps", type=int, default=5000, help="steps per trial in that pass")
    parser.add_argument("--window", type=int, default=500, help="the attention window (context_length) in that pass")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for batch in args.batch:
        results[f"batch_{batch}"] = r = measure(batch, args.recompute_steps)
        print(f"batch {batch}: ms per action at steps 1-100 / 201-300 / 401-500, and the whole 500-step trial")
        for name, row in r.items():
            blocks = " / ".join(f"{v:.3f}" for k, v in row.items() if k.startswith("ms_"))
            total = f", trial {row['trial_seconds']:.2f} s" if "trial_seconds" in row else ""
            print(f"  {name:24s} {blocks}{total}")
        cached, gru = r["transformer_cached"], r["gru"]
        print(f"  cached transformer: last block / first block {cached['ms_per_step_401_500'] / cached['ms_per_step_1_100']:.2f}x;"
              f" trial / GRU's {cached['trial_seconds'] / gru['trial_seconds']:.2f}x")
        if "ms_per_step_401_500" in r["transformer_recomputed"]:
            rec = r["transformer_recomputed"]
            print(f"  recomputed / cached at steps 401-500: {rec['ms_per_step_401_500'] / cached['ms_per_step_401_500']:.1f}x")
    if args.update:
        results["update"] = u = measure_update(args.update_trials, args.update_steps, args.window)
        print(f"PPO pass over {args.update_trials} trials of {args.update_steps} steps, window {args.window}: banded "
              f"{u['banded_seconds']:.2f} s, masked {u['masked_seconds']:.2f} s; masked / banded "
              f"{u['masked_seconds'] / u['banded_seconds']:.1f}x; largest difference {u['max_abs_difference']:.1e}")
    if args.json:
        write_json_atomic(args.json, results, make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
