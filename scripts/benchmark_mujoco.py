#!/usr/bin/env python
"""Env steps per second of the batched MuJoCo backend, side by side with its two references.

    python scripts/benchmark_mujoco.py                      # 20 simulations of HalfCheetahVel
    python scripts/benchmark_mujoco.py --json runs/bench_mujoco.json
    python scripts/benchmark_mujoco.py --env-kwargs frame_skip=1   # MAML-RL's cheetah time step
    python scripts/benchmark_mujoco.py --env metarl/MetaWorldML10-v0 --steps 150   # the metaworld extra

For a Meta-World family the methods are ``batched`` (:mod:`metarl.envs.meta_world_batched`), ``generic`` (one
Meta-World env per simulation, the sampler's other backend) and ``bare_mj_step`` (the physics alone on the same
models and reset states), and the line ``batched / generic <ratio>x`` is printed.

All four run the same simulations (20 tasks x 1 episode, the same reset seeds, the same random
actions, ``--steps`` env steps each):

* ``batched``: ``env.unwrapped.batched(tasks, 1)`` (:class:`metarl.envs.mujoco_batched.MujocoBatchedEnv`),
  ``--nthread`` physics threads (default: every usable core);
* ``sync_vector``: a Gymnasium ``SyncVectorEnv`` of ``gymnasium.make`` envs set to the same tasks;
* ``make_vec``: ``gymnasium.make_vec(id, num_envs)``, metarl's vector env on the batched backend (what a
  user of Gymnasium's vector API gets), same tasks;
* ``bare_mj_step``: the physics limit on one core: one ``MjData``, ``data.ctrl[:] = a`` and
  ``mj_step(nstep=frame_skip)`` per env step, nothing else (no observation, reward or Python env).

Each method runs ``--repeats`` times, interleaved, and the best run counts (the machine is shared,
so slower runs measure the other processes). Ratios are taken within this one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import metarl  # noqa: F401  (registers the families)
from metarl.launcher import parse_env_kwargs
from metarl.batched import GenericBatchedEnv
from metarl.envs.meta_world_batched import PORTED_CLASSES, MetaWorldBatchedEnv
from metarl.envs.mujoco_batched import usable_cpu_count


@dataclass
class Args:
    """Benchmark settings."""

    env_id: str = "metarl/HalfCheetahVel-v0"
    """The task family to step."""
    env_kwargs: dict = field(default_factory=dict)
    """Family constructor kwargs (``--env-kwargs frame_skip=1``), for every method."""
    num_sims: int | None = None
    """Simulations (one episode of each of this many tasks); default 20, for Meta-World 200 (a meta-batch: 20 tasks
    x 10 episodes, as ML10's MAML batches)."""
    steps: int = 200
    """Env steps per simulation per run (the registered horizon)."""
    repeats: int = 5
    """Runs per method; the best counts."""
    nthread: int | None = None
    """Physics threads of the batched backend (default: every usable core)."""
    seed: int = 0
    """Seeds the tasks, the reset seeds and the actions."""
    json: str | None = None
    """Write the results to this JSON file."""


@dataclass
class Result:
    """Env steps per second of each method (best and median run) and the ratios of the best runs."""

    env_id: str
    env_kwargs: dict
    num_sims: int
    steps: int
    nthread: int
    cpus: int
    loadavg_before: list[float]
    steps_per_s: dict[str, float] = field(default_factory=dict)
    median_steps_per_s: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    platform: str = ""
    mujoco_version: str = ""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    defaults = Args()
    parser.add_argument("--env-id", "--env", default=defaults.env_id)
    parser.add_argument("--env-kwargs", nargs="*", type=str, default=[], metavar="KEY=VALUE")
    parser.add_argument("--num-sims", type=int, default=None)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--nthread", type=int, default=defaults.nthread)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", default=defaults.json, metavar="PATH")
    ns = vars(parser.parse_args())
    ns["env_kwargs"] = parse_env_kwargs(ns["env_kwargs"])
    if ns["num_sims"] is None:
        ns["num_sims"] = 200 if "MetaWorld" in ns["env_id"] else 20
    return Args(**ns)


def main() -> Result:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    probe = gym.make(args.env_id, **args.env_kwargs)
    family = probe.unwrapped
    tasks = family.sample_tasks(args.num_sims, rng)
    seeds = rng.integers(0, 2**31 - 1, size=args.num_sims)
    action_space = family.action_space
    actions = rng.uniform(action_space.low, action_space.high,
                          size=(args.steps, args.num_sims, *action_space.shape)).astype(np.float32)

    batched = family.batched(tasks, 1, nthread=args.nthread)
    if batched is None or isinstance(batched, MetaWorldBatchedEnv):
        return _metaworld(args, family, tasks, seeds, actions, batched)

    def make_fn(task):
        def make():
            env = gym.make(args.env_id, **args.env_kwargs)
            env.unwrapped.set_task(task)
            return env
        return make

    vector = gym.vector.SyncVectorEnv([make_fn(t) for t in tasks])
    family_vector = gym.make_vec(args.env_id, num_envs=args.num_sims, vectorization_mode="vector_entry_point",
                                 max_episode_steps=args.steps, **args.env_kwargs)
    family_vector.unwrapped.set_task(tasks)

    # The bare loop replays the same episodes: the batched backend's reset states, the same actions.
    batched.reset(seeds)
    initial_states = [batched.get_state(i) for i in range(args.num_sims)]
    model = family.model  # the HalfCheetah/Ant tasks change only the reward, not the physics
    data = mujoco.MjData(model)
    frame_skip = family.frame_skip

    def run_batched() -> None:
        batched.reset(seeds)
        for t in range(args.steps):
            batched.step(actions[t])

    def run_vector() -> None:
        vector.reset(seed=[int(s) for s in seeds])
        for t in range(args.steps):
            vector.step(actions[t])

    def run_make_vec() -> None:
        family_vector.reset(seed=[int(s) for s in seeds])
        for t in range(args.steps):
            family_vector.step(actions[t])

    def run_bare() -> None:
        for i, (qpos, qvel) in enumerate(initial_states):
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = qpos, qvel
            mujoco.mj_forward(model, data)
            for t in range(args.steps):
                data.ctrl[:] = actions[t, i]
                mujoco.mj_step(model, data, nstep=frame_skip)

    methods = {"batched": run_batched, "sync_vector": run_vector, "make_vec": run_make_vec, "bare_mj_step": run_bare}
    result = Result(env_id=args.env_id, env_kwargs=args.env_kwargs, num_sims=args.num_sims, steps=args.steps,
                    nthread=batched.nthread, cpus=usable_cpu_count(), loadavg_before=[round(x, 2) for x in os.getloadavg()],
                    platform=platform.platform(), mujoco_version=mujoco.__version__)
    result.steps_per_s, result.median_steps_per_s = _rates(methods, args.num_sims * args.steps, args.repeats)
    best = result.steps_per_s
    result.ratios = {
        "batched / sync_vector": best["batched"] / best["sync_vector"],
        "batched / bare_mj_step": best["batched"] / best["bare_mj_step"],
        "sync_vector / bare_mj_step": best["sync_vector"] / best["bare_mj_step"],
        "make_vec / sync_vector": best["make_vec"] / best["sync_vector"],
    }

    _report(args, result, "targets: batched / sync_vector >= 2, batched / bare_mj_step >= 0.6")

    batched.close()
    vector.close()
    family_vector.close()
    probe.close()
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result), indent=2) + "\n")
        print(f"wrote {path}")
    return result


def _report(args: Args, result: Result, targets: str) -> None:
    """Print the rates and ratios (each ratio as a line ``name <ratio>x``)."""
    print(f"{args.env_id} {args.env_kwargs or ''}: {args.num_sims} simulations x {args.steps} steps, best of "
          f"{args.repeats}; batched backend on {result.nthread} thread(s), {result.cpus} usable core(s), load average "
          f"before {result.loadavg_before}")
    print(f"{'method':<14} {'env steps/s':>12} {'median':>12}")
    for name, rate in result.steps_per_s.items():
        print(f"{name:<14} {rate:>12,.0f} {result.median_steps_per_s[name]:>12,.0f}")
    for name, ratio in result.ratios.items():
        print(f"{name} {ratio:.2f}x")
    print(targets)


def _rates(methods: dict, env_steps: int, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best and median env steps per second of each method, the methods interleaved ``repeats`` times."""
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            rates[name].append(env_steps / (time.perf_counter() - start))
    return {n: max(r) for n, r in rates.items()}, {n: float(np.median(r)) for n, r in rates.items()}


def _metaworld(args: Args, family, tasks, seeds, actions, batched) -> Result | None:
    """The Meta-World comparison: batched backend, generic backend and the bare physics, in this process."""
    if batched is None:
        missing = sorted({t["name"] for t in tasks} - set(PORTED_CLASSES))
        raise SystemExit(f"{args.env_id}: no batched port yet for the Meta-World classes {missing} (ported: "
                         f"{list(PORTED_CLASSES)}); try --env metarl/MetaWorldML1-v0 --env-kwargs env_name=push-v3")
    generic = GenericBatchedEnv(lambda: gym.make(args.env_id, **args.env_kwargs), tasks, 1)
    batched.reset(seeds)
    starts = [(g, j, state.copy()) for g, states in zip(batched._groups, batched._states) for j, state in enumerate(states)]
    integration = int(mujoco.mjtState.mjSTATE_INTEGRATION)

    def run_batched() -> None:
        batched.reset(seeds)
        for t in range(args.steps):
            batched.step(actions[t])

    def run_generic() -> None:
        generic.reset(seeds)
        for t in range(args.steps):
            generic.step(actions[t])

    def run_bare() -> None:
        for g, j, state in starts:
            model, data = g.models[j], g.scratch[0]
            mujoco.mj_setState(model, data, state, integration)
            for _ in range(args.steps):
                mujoco.mj_step(model, data, nstep=g.frame_skip)

    methods = {"batched": run_batched, "generic": run_generic, "bare_mj_step": run_bare}
    result = Result(env_id=args.env_id, env_kwargs=args.env_kwargs, num_sims=args.num_sims, steps=args.steps,
                    nthread=batched.nthread, cpus=usable_cpu_count(), loadavg_before=[round(x, 2) for x in os.getloadavg()],
                    platform=platform.platform(), mujoco_version=mujoco.__version__)
    result.steps_per_s, result.median_steps_per_s = _rates(methods, args.num_sims * args.steps, args.repeats)
    best = result.steps_per_s
    result.ratios = {"batched / generic": best["batched"] / best["generic"],
                     "batched / bare_mj_step": best["batched"] / best["bare_mj_step"]}
    _report(args, result, "target: batched / generic >= 3")
    batched.close()
    generic.close()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
