#!/usr/bin/env python
"""The HalfCheetah meta-test table (metarl issue 4): MAML-TRPO and MAML-PPO next to the original MAML.

    python scripts/halfcheetah_table.py runs/maml-trpo-dir-s0 runs/maml-ppo-dir-s0 [more run dirs]
    python scripts/halfcheetah_table.py runs/* --out docs/halfcheetah_table.md
    python scripts/halfcheetah_table.py runs/* --curves 25     # plus the training curves per 25 iterations
    python scripts/halfcheetah_table.py runs/vel-* --by-param velocity --edges 0 0.5 1 1.5 2   # return by target

Each argument is a run directory written by ``scripts/train.py`` (``metatest.json``, and
``checkpoint.pt`` for the horizon). Runs are grouped by family; each row is a run's mean return on
the meta-test tasks after 0, 1, 2 and 3 adaptation steps (+/- the 95% CI over tasks), its
meta-iterations and its wall-clock meta-training time (``train_seconds``: the trainer's clock,
summed over resumed sessions, meta-test excluded). An algorithm with several seeds also gets a
mean row. A row whose meta-test differs from the original protocol (40 test tasks, horizon 200,
3 adaptation steps) says how in its last column. A run trained with ``--eval-every`` gets a second row:
its best validation checkpoint (``metatest_best.json``), with the iteration and training time at which
it was saved. How to produce the runs: ``docs/maml_ppo.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the original MAML results (0, 1, 2, 3 adaptation steps), as given in metarl issue 4
ORIGINAL_MAML = {
    "metarl/HalfCheetahDir-v0": (-50.7, 293.2, 313.5, 315.7),
    "metarl/HalfCheetahVel-v0": (-129.5, -78.6, -66.6, -60.8),
}
PROTOCOL = {"n_tasks": 40, "horizon": 200, "steps": 3}
REGISTERED_HORIZON = 200  # of both HalfCheetah families (envs/__init__.py)


class RunError(ValueError):
    """A run directory cannot go in the table; the message says why."""


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """The meta-test result of ``run_dir`` plus its horizon (from the checkpoint's settings, when there is one)."""
    run_dir = Path(run_dir)
    path = run_dir / "metatest.json"
    if not run_dir.is_dir():
        raise RunError(f"no run directory {run_dir}")
    if not path.is_file():
        raise RunError(f"{run_dir} has no metatest.json; finish the run (scripts/train.py --resume {run_dir}) first")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from exc
    missing = [k for k in ("env", "algo", "returns_by_step", "n_tasks") if k not in result]
    if missing:
        raise RunError(f"{path} lacks {missing}: it is not the meta-test of a MAML run")
    horizon, variant = None, ""
    if (run_dir / "checkpoint.pt").is_file():
        from metarl.checkpoint import load_checkpoint

        config = load_checkpoint(run_dir)["config"]
        horizon = config.get("max_episode_steps") or REGISTERED_HORIZON
        variant = settings_changed(config)
    best = None
    if (run_dir / "metatest_best.json").is_file():  # a run with --eval-every: its best validation checkpoint
        best = json.loads((run_dir / "metatest_best.json").read_text())
    return {**result, "horizon": horizon, "dir": str(run_dir), "variant": variant, "best_checkpoint": best}


#: settings that do not change what is trained (or that the table shows in other columns)
_NOT_A_VARIANT = {"env", "algo", "seed", "max_episode_steps", "metatest_tasks", "metatest_steps", "metatest_seed"}


def settings_changed(config: dict[str, Any]) -> str:
    """``"name=value, ..."`` for a run's settings that differ from what ``metarl train`` uses by default
    for its algorithm and family (``""`` if none or the algorithm is unknown)."""
    import dataclasses

    from metarl.cli import ALGORITHMS

    algo = config.get("algo")
    if algo not in ALGORITHMS:
        return ""
    spec = ALGORITHMS[algo]()
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(spec.config_cls)}
    if spec.defaults_for_env is not None:
        defaults.update(spec.defaults_for_env(config.get("env", ""), config.get("env_kwargs") or {}))
    changed = []
    for name, value in config.items():
        if name in _NOT_A_VARIANT or name not in defaults:
            continue
        default = defaults[name]
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, dict):  # env_kwargs: shown as the family's own settings
            changed.extend(f"{k}={v}" for k, v in value.items() if (default or {}).get(k) != v)
            continue
        if value != default:
            shown = "x".join(map(str, value)) if isinstance(value, tuple) else value
            changed.append(f"{name}={shown}")
    return ", ".join(changed)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


def _deviations(run: dict[str, Any]) -> str:
    notes = []
    if run["n_tasks"] != PROTOCOL["n_tasks"]:
        notes.append(f"{run['n_tasks']} test tasks")
    if run["horizon"] is None:
        notes.append("horizon unknown (no checkpoint)")
    elif run["horizon"] != PROTOCOL["horizon"]:
        notes.append(f"horizon {run['horizon']}")
    steps = len(run["returns_by_step"]) - 1
    if steps < PROTOCOL["steps"]:
        notes.append(f"only {steps} adaptation step{'' if steps == 1 else 's'}")
    return ", ".join(notes)


def _cells(returns: Sequence[float], ci95: Sequence[float] | None) -> list[str]:
    cells = []
    for k in range(PROTOCOL["steps"] + 1):
        if k >= len(returns):
            cells.append("n/a")
        elif ci95 is not None and k < len(ci95):
            cells.append(f"{returns[k]:.1f} ± {ci95[k]:.1f}")
        else:
            cells.append(f"{returns[k]:.1f}")
    return cells


def halfcheetah_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown tables (one per family) of the runs from :func:`load_run`, under the original MAML row."""
    by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_env[run["env"]].append(run)
    header = ("| method | seed | meta-iterations | 0 steps | 1 step | 2 steps | 3 steps | wall-clock | notes |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    blocks = []
    for env in sorted(by_env):
        lines = [f"### {env}", "",
                 f"Mean return per episode on the meta-test tasks after k adaptation steps (± 95% CI over tasks); "
                 f"protocol: {PROTOCOL['n_tasks']} test tasks, horizon {PROTOCOL['horizon']}.", "", header]
        if env in ORIGINAL_MAML:
            lines.append("| MAML-TRPO, original (Finn et al. 2017) | | | "
                         + " | ".join(f"{v:.1f}" for v in ORIGINAL_MAML[env]) + " | | |")
        # one group per algorithm, settings and run length: a mean row only over seeds of the same experiment
        by_algo: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
        for run in sorted(by_env[env], key=lambda r: (r["algo"], r.get("variant", ""), r.get("iterations") or 0,
                                                      r.get("seed", 0))):
            variant = run.get("variant", "")
            by_algo[(f"{run['algo']} ({variant})" if variant else run["algo"], run.get("iterations"))].append(run)
        for (algo, _), algo_runs in by_algo.items():
            for run in algo_runs:
                cells = _cells(run["returns_by_step"], run.get("ci95_by_step"))
                lines.append(f"| {algo} | {run.get('seed', '?')} | {run.get('iterations', '?')} | "
                             + " | ".join(cells) + f" | {_fmt_seconds(run.get('train_seconds'))} | {_deviations(run)} |")
                best = run.get("best_checkpoint")
                if best is not None:
                    val = best["validation"]
                    note = f"best of the run's validation scores ({val['tasks']} tasks, seed {val['seed']})"
                    deviations = _deviations({**run, **best})
                    lines.append(f"| {algo}, best validation checkpoint | {best.get('seed', '?')} | {best['iteration']} | "
                                 + " | ".join(_cells(best["returns_by_step"], best.get("ci95_by_step")))
                                 + f" | {_fmt_seconds(best.get('train_seconds'))} | "
                                 + ", ".join(filter(None, [note, deviations])) + " |")
            if len(algo_runs) > 1:
                n_steps = min(len(r["returns_by_step"]) for r in algo_runs)
                mean = [sum(r["returns_by_step"][k] for r in algo_runs) / len(algo_runs) for k in range(n_steps)]
                seconds = [r.get("train_seconds") for r in algo_runs]
                mean_seconds = sum(seconds) / len(seconds) if None not in seconds else None
                lines.append(f"| **{algo}, mean of {len(algo_runs)} seeds** | | | " + " | ".join(_cells(mean, None))
                             + f" | {_fmt_seconds(mean_seconds)} | |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def param_breakdown(runs: Sequence[dict[str, Any]], param: str, edges: Sequence[float]) -> str:
    """Mean meta-test return after 0..3 steps per bin ``[edges[i], edges[i+1])`` of a scalar task parameter.

    Read from each run's ``tasks`` and ``returns_by_task`` (``metatest.json``; the best validation
    checkpoint's too), e.g. ``velocity`` for HalfCheetahVel: it shows which tasks a mean return loses on.
    The last bin includes its upper edge.
    """
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise RunError(f"--edges must be at least two increasing numbers, got {list(edges)}")
    header = ("| run | " + param + " | tasks | 0 steps | 1 step | 2 steps | 3 steps |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    lines = [f"Mean meta-test return by the tasks' `{param}`", "", header]
    for run in runs:
        entries = [(run, f"{run['dir']}")]
        if run.get("best_checkpoint") is not None:
            entries.append(({**run["best_checkpoint"], "dir": run["dir"]},
                            f"{run['dir']} (best validation checkpoint)"))
        for result, label in entries:
            if "tasks" not in result or "returns_by_task" not in result:
                raise RunError(f"{run['dir']}: its meta-test has no per-task returns; rerun the meta-test "
                               f"(metarl train --resume {run['dir']} --iterations N)")
            try:
                values = [float(task["params"][param]) for task in result["tasks"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise RunError(f"{run['dir']}: its tasks have no scalar parameter {param!r} ({exc!r})") from exc
            by_step = result["returns_by_task"]
            for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
                last = i == len(edges) - 2
                idx = [j for j, v in enumerate(values) if lo <= v < hi or (last and v == hi)]
                if not idx:
                    continue
                means = [sum(step[j] for j in idx) / len(idx) for step in by_step]
                closing = "]" if last else ")"
                lines.append(f"| {label} | [{lo:g}, {hi:g}{closing} | {len(idx)} | "
                             + " | ".join(_cells(means, None)) + " |")
    return "\n".join(lines) + "\n"


def training_curve(run_dir: str | Path, block: int = 25, last: int | None = None) -> list[tuple[int, int, float, float]]:
    """``(first, last iteration, mean return before, after the inner step)`` per ``block`` meta-iterations.

    Read from the run's TensorBoard events (``rollout/return_before_adaptation`` and
    ``rollout/return_after_adaptation``, one value per meta-iteration). A resumed run logs again from
    its checkpoint's iteration on; the later value of a step replaces the earlier one. ``last``: the
    meta-iteration that was meta-tested (later ones, logged by a run stopped after its meta-test, are left out).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if block < 1:
        raise ValueError(f"block must be a positive number of iterations, got {block!r}")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    series = []
    for tag in ("rollout/return_before_adaptation", "rollout/return_after_adaptation"):
        if tag not in events.Tags()["scalars"]:
            raise RunError(f"{run_dir} has no {tag} curve in its TensorBoard events")
        by_step = {}
        for event in sorted(events.Scalars(tag), key=lambda e: e.wall_time):
            by_step[event.step] = event.value
        series.append([by_step[step] for step in sorted(by_step)])
    before, after = (values[:last] if last is not None else values for values in series)
    rows = []
    for start in range(0, min(len(before), len(after)), block):
        b, a = before[start:start + block], after[start:start + block]
        rows.append((start + 1, start + len(b), sum(b) / len(b), sum(a) / len(a)))
    return rows


def curves_table(runs: Sequence[dict[str, Any]], block: int = 25) -> str:
    """Markdown table of :func:`training_curve` for runs from :func:`load_run`: a row per run, a column per block."""
    curves = [(run, training_curve(run["dir"], block, run.get("iterations"))) for run in runs]
    width = max(len(curve) for _, curve in curves)
    longest = max(curves, key=lambda rc: len(rc[1]))[1]
    header = "| run | " + " | ".join(f"{first}-{last}" for first, last, _, _ in longest) + " |"
    lines = [f"Mean training return before / after the inner step per {block} meta-iterations (a run's last "
             "block ends at its meta-tested iteration):", "",
             header, "| --- |" + " --- |" * width]
    for run, curve in curves:
        family = run["env"].removeprefix("metarl/").removesuffix("-v0")
        label = f"{family}, {run['algo']}" + (f" ({run['variant']})" if run.get("variant") else "")
        if run.get("seed") is not None:
            label += f", seed {run['seed']}"
        if run.get("iterations") is not None:
            label += f", {run['iterations']} iterations"
        cells = [f"{b:.1f} / {a:.1f}" for _, _, b, a in curve] + [""] * (width - len(curve))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of scripts/train.py")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    parser.add_argument("--curves", type=int, default=0, metavar="N",
                        help="also tabulate the training curves (mean return before / after the inner step) "
                             "per N meta-iterations, from the runs' TensorBoard events")
    parser.add_argument("--by-param", default=None, metavar="NAME",
                        help="also tabulate the meta-test return by bins of this scalar task parameter "
                             "(e.g. velocity), from the runs' per-task returns")
    parser.add_argument("--edges", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0],
                        help="bin edges for --by-param (default: 0 0.5 1 1.5 2, HalfCheetahVel's U[0, 2])")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(d) for d in args.runs]
        table = halfcheetah_table(runs)
        if args.curves:
            table += "\n" + curves_table(runs, args.curves)
        if args.by_param:
            table += "\n" + param_breakdown(runs, args.by_param, args.edges)
    except RunError as exc:
        print(f"halfcheetah_table: {exc}", file=sys.stderr)
        return 2
    print(table, end="")
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
