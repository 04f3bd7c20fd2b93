"""``metarl plot``: learning and adaptation curves of runs as one PNG, readable without TensorBoard.

    metarl plot runs/nav -o nav.png                       # one run
    metarl plot runs/nav-seeds runs/nav-ppo-seeds -o cmp.png   # multi-seed runs (--seed 0 1 2) side by side
    metarl plot runs/maml runs/rl2 -o cmp.png --tag eval/score eval/last_episode_return --logx

Left: the headline tag (``rollout/return_after_adaptation`` for meta-RL; ``--tag`` picks another, or several:
each run draws the first of them it logged, so algorithms with their own names for a quantity share a plot;
``--logx`` for budgets that differ by orders of magnitude) against environment steps, read from the runs' TensorBoard events. Runs that differ only in their
seed are drawn as their mean with a 95% band (Student's t over seeds). Right: the adaptation curve
of each run's ``metatest.json``: return against adaptation steps (MAML) or against the episode
index in a trial (RL^2, PEARL), the mean over seeds with a 95% band (one run: over its test tasks).
A directory made by ``metarl train --seed 0 1 2`` stands for its seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metarl.config import CommandParser
from metarl.registry import algorithm_record
from metarl.returns import ci95

__all__ = ["plot_runs", "plot_main", "find_runs", "smooth", "HEADLINE_TAGS"]

#: the tag drawn by default: the first one a run has
HEADLINE_TAGS = ("rollout/return_after_adaptation", "train/query_accuracy", "train/query_mse", "train/meta_loss",
                 "train/loss")
_IGNORED_SETTINGS = ("seed", "logdir", "threads", "checkpoint_every", "eval_every")


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The run directories under ``paths``: each path itself when it holds a ``config.yaml``, else its ``seed_*``
    subdirectories (a multi-seed run).

    Raises:
        ValueError: a path that is neither.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.yaml").is_file():
            runs.append(path)
            continue
        seeds = sorted(p for p in path.glob("seed_*") if (p / "config.yaml").is_file())
        if not seeds:
            raise ValueError(f"{path} is not a run directory (no config.yaml) nor a multi-seed one (no seed_*/): "
                             "give the logdir of a metarl run")
        runs.extend(seeds)
    return runs


def _settings(run: Path) -> dict[str, Any]:
    """The run's settings (but the seed's, the files' and the meta-test's), a setting added since it ran at its
    default, so a run of an older version, or one meta-tested differently, groups with the same settings' runs."""
    data = yaml.safe_load((run / "config.yaml").read_text()) or {}
    try:
        fields = algorithm_record(str(data.get("algo"))).settings_class().__dataclass_fields__
    except ValueError:  # an algorithm not registered here: its settings as written
        fields = {}
    defaults = {name: list(f.default) if isinstance(f.default, tuple) else f.default  # as YAML writes them
                for name, f in fields.items() if f.default is not dataclasses.MISSING}
    return {k: v for k, v in {**defaults, **data}.items()
            if k not in _IGNORED_SETTINGS and not k.startswith("metatest_")}  # the meta-test's: not the curve's


def _label(settings: dict[str, Any]) -> str:
    return f"{settings.get('algo', '?')} {settings.get('env') or settings.get('dataset') or ''}".strip()


def _seed(run: Path) -> Any:
    return (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("seed")


def _group(runs: Sequence[Path], note: Any = None) -> list[tuple[str, list[Path]]]:
    """Runs grouped by identical settings apart from the seed, in first-seen order. A run given twice, or a
    second run of a seed a group already has (a copy, or a seed directory given beside its parent), is left
    out with a ``note`` (it would count that seed twice and narrow the band)."""
    groups: list[tuple[dict[str, Any], list[Path]]] = []
    seen: set[Path] = set()
    for run in runs:
        if run.resolve() in seen:
            if note is not None:
                note(f"{run} is given twice: drawn once")
            continue
        seen.add(run.resolve())
        settings = _settings(run)
        for existing, members in groups:
            if existing == settings:
                twin = next((m for m in members if _seed(m) == _seed(run)), None)
                if twin is not None:
                    if note is not None:
                        note(f"{run} repeats seed {_seed(run)} of {twin} with the same settings: left out, so no seed "
                             "counts twice")
                    break
                members.append(run)
                break
        else:
            groups.append((settings, [run]))
    labels = [_label(s) for s, _ in groups]
    out = []
    for (settings, members), label in zip(groups, labels):
        if labels.count(label) > 1:  # same algorithm and family, other settings: name the run directory
            label = f"{label} ({members[0].parent.name if members[0].name.startswith('seed_') else members[0].name})"
        out.append((label, members))
    return out


def _scalars(run: Path, tag: Sequence[str] | None) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``(tag, steps, values)`` of the first of ``tag`` (default: :data:`HEADLINE_TAGS`) the run logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    # A resumed run's events after its last checkpoint are logged again from there; TensorBoard drops the stale
    # ones and warns of "a TensorFlow restart", which here is the expected case.
    tb_logger = logging.getLogger("tensorboard")
    level = tb_logger.level
    tb_logger.setLevel(logging.ERROR)
    try:
        acc.Reload()
    finally:
        tb_logger.setLevel(level)
    tags = acc.Tags().get("scalars", [])
    chosen = next((t for t in (tag or HEADLINE_TAGS) if t in tags), None)
    if chosen is None:
        return None
    events = acc.Scalars(chosen)
    return chosen, np.array([e.step for e in events], dtype=np.float64), np.array([e.value for e in events])


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The running mean of ``values`` over the last ``window`` points (fewer at the start); ``window`` 1: as is."""
    if window < 1:
        raise ValueError(f"smoothing window must be at least 1 point, got {window}")
    sums = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _band(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% half-width over runs of curves cut to the shortest."""
    n = min(len(v) for v in values)
    stack = np.stack([v[:n] for v in values])
    return stack.mean(0), np.array([ci95(stack[:, i], student_t=True) for i in range(n)])


def adaptation_label(axes: list[str]) -> str:
    """The adaptation panel's x label from each drawn group's ``"<kind> (<algo>)"``: the kind alone when all share
    it, else each kind once with its algorithms, one kind per line so that the label fits under its panel
    (``"episode in the trial (pearl, rl2-ppo) /\nadaptation steps (maml-trpo)"``)."""
    kinds: dict[str, list[str]] = {}
    for axis in axes:
        kind, algo = axis[:-1].split(" (")
        algos = kinds.setdefault(kind, [])
        if algo not in algos:
            algos.append(algo)
    if len(kinds) == 1:
        return next(iter(kinds))
    return " /\n".join(f"{kind} ({', '.join(algos)})" for kind, algos in kinds.items())


def _adaptation_curve(result: dict[str, Any], success: bool = False) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``(x label, values, per-task 95% half-widths)`` of a meta-test result, if it has an adaptation axis: the
    returns, or with ``success`` the success rates (families that report success; no per-task interval)."""
    if success:
        for axis, key in (("adaptation steps", "success_rate_by_step"),
                          ("episode in the trial", "rl2_success_rate_by_episode"),
                          ("episode in the trial", "success_rate_by_episode")):
            if key in result:
                return axis, np.asarray(result[key], dtype=np.float64), np.zeros(len(result[key]))
        return None
    if "returns_by_step" in result:
        return "adaptation steps", np.asarray(result["returns_by_step"]), np.asarray(result["ci95_by_step"])
    by_episode = result.get("mean_return_by_episode")
    if isinstance(by_episode, dict) and "rl2" in by_episode:
        return "episode in the trial", np.asarray(by_episode["rl2"]), np.zeros(len(by_episode["rl2"]))
    if isinstance(by_episode, list):
        return ("episode in the trial", np.asarray(by_episode),
                np.asarray(result.get("ci95_return_by_episode", [0.0] * len(by_episode))))
    return None


def plot_runs(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, tag: str | Sequence[str] | None = None,
              title: str | None = None, logx: bool = False, smoothing: int = 1) -> Path:
    """Draw the learning and adaptation curves of the runs under ``paths`` into ``out`` (PNG); returns it.

    ``tag``: the scalar to draw, or several (each run draws the first of them it logged); ``logx``: a log-scaled
    step axis; ``smoothing``: each run's curve as the running mean of its last ``smoothing`` logged points (noisy
    per-iteration rates such as success over 10-20 tasks), before the mean over seeds.

    Raises:
        ValueError: a path that is not a run, or runs without the tag asked for.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = [tag] if isinstance(tag, str) else list(tag) if tag else None
    groups = _group(find_runs(paths), note=lambda text: print(f"metarl plot: note: {text}", file=sys.stderr))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    drawn_tags, adaptation_axes = set(), []
    success = bool(tags) and all("success" in t for t in tags)  # success curves: the meta-test's success beside them
    for index, (label, runs) in enumerate(groups):
        colour = f"C{index}"
        curves = [(c[0], c[1], smooth(c[2], smoothing)) for c in (_scalars(run, tags) for run in runs)
                  if c is not None]
        if curves:
            drawn_tags.add(curves[0][0])
            mean, half = _band([c[2] for c in curves])
            steps = _band([c[1] for c in curves])[0]
            shown = f", {curves[0][0]}" if tags and len(tags) > 1 else ""
            left.plot(steps, mean, color=colour,
                      label=f"{label} ({len(curves)} seed{'s' if len(curves) > 1 else ''}{shown})")
            if len(curves) > 1:
                left.fill_between(steps, mean - half, mean + half, color=colour, alpha=0.2)
        results = [json.loads((run / "metatest.json").read_text()) for run in runs if (run / "metatest.json").is_file()]
        adaptation = [c for c in (_adaptation_curve(r, success) for r in results) if c is not None]
        if adaptation:
            adaptation_axis = adaptation[0][0]
            adaptation_axes.append(f"{adaptation_axis} ({label.split()[0]})")
            if len(adaptation) > 1:
                mean, half = _band([c[1] for c in adaptation])
            else:
                mean, half = adaptation[0][1], adaptation[0][2]
            x = np.arange(len(mean)) + (0 if adaptation_axis == "adaptation steps" else 1)
            right.errorbar(x, mean, yerr=half, color=colour, marker="o", capsize=3, label=label)
    if not drawn_tags:
        wanted = " / ".join(tags or HEADLINE_TAGS)
        raise ValueError(f"no run under {', '.join(map(str, paths))} logged {wanted}: pick a logged tag with --tag")
    rl = any("env" in _settings(runs[0]) for _, runs in groups)  # meta-RL runs log against environment steps
    left.set_xlabel("environment steps" if rl else "examples seen")
    left.set_ylabel(" / ".join(sorted(drawn_tags)) if len(drawn_tags) < 3 else "(per run: see the legend)")
    if logx:
        left.set_xscale("log")
    left.set_title("learning curve (mean and 95% band over seeds)", fontsize=9)
    left.legend(fontsize=7)
    if not adaptation_axes:
        right.set_axis_off()
    else:
        from matplotlib.ticker import MaxNLocator

        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel(adaptation_label(adaptation_axes))
        right.set_ylabel("meta-test success rate" if success else "meta-test return")
        right.set_title("adaptation (meta-test success, 95% interval over seeds)" if success
                        else "adaptation (meta-test, 95% interval)", fontsize=9)
        right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_main(argv: Sequence[str] | None = None) -> Path:
    """``metarl plot DIR [DIR ...] -o fig.png [--tag TAG [TAG ...]] [--logx] [--smooth N] [--title TEXT]``."""
    parser = CommandParser(prog="metarl plot", description="learning and adaptation curves as a PNG")
    parser.add_argument("runs", nargs="+", type=Path, metavar="DIR", help="run directories (or multi-seed ones)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the PNG to write")
    parser.add_argument("--tag", nargs="+", default=None, metavar="TAG",
                        help=f"scalar tag to draw, or several: each run draws the first it logged (default: the first "
                             f"of {HEADLINE_TAGS})")
    parser.add_argument("--logx", action="store_true", help="log-scaled environment-step axis")
    parser.add_argument("--smooth", type=int, default=1, metavar="N",
                        help="draw each run's running mean over its last N logged points (1: as logged)")
    parser.add_argument("--title", default=None, help="figure title")
    args = parser.parse_args(argv)
    if args.smooth < 1:
        raise ValueError(f"--smooth {args.smooth}: give the number of points to average, at least 1")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"-o {args.output}: metarl plot writes PNG files; name a .png")
    out = plot_runs(args.runs, args.output, tag=args.tag, title=args.title, logx=args.logx,
                     smoothing=args.smooth)
    print(f"wrote {out}")
    return out
