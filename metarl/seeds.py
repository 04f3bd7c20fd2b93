"""Several seeds of one run: ``metarl train ... --seed 0 1 2`` and ``metarl.train(..., seed=[0, 1, 2])``.

Each seed runs into ``DIR/seed_<s>`` (the same run as ``--seed s`` alone); ``DIR/metatest_summary.json``
holds every number of the seeds' meta-tests with its mean, standard deviation and 95% interval over seeds
(Student's t). ``--resume DIR`` of such a directory resumes each seed and rewrites the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metarl.launcher import DEFAULT_ALGO, launch
from metarl.returns import ci95

__all__ = ["multi_seed", "write_seed_summary", "SUMMARY_NAME"]

#: the file a multi-seed run writes into its directory
SUMMARY_NAME = "metatest_summary.json"


def _seed_dirs(run_dir: Path) -> list[Path]:
    return sorted((p for p in run_dir.glob("seed_*") if (p / "checkpoint.pt").is_file()),
                  key=lambda p: int(p.name.split("_", 1)[1]) if p.name.split("_", 1)[1].isdigit() else -1)


def _strip_option(argv: list[str], option: str, many: bool) -> tuple[list[str], list[str]]:
    """``argv`` without ``option`` and its value(s), and those values."""
    out, values, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        if token == option:
            i += 1
            while i < len(argv) and not argv[i].startswith("--") and (many or not values):
                values.append(argv[i])
                i += 1
            continue
        if token.startswith(option + "="):
            values.append(token.split("=", 1)[1])
        else:
            out.append(token)
        i += 1
    return out, values


def multi_seed(command: str, argv: list[str]) -> dict[str, Any] | None:
    """``--seed 0 1 2``: each seed into ``DIR/seed_<s>``, then ``DIR/metatest_summary.json``; ``--resume DIR`` of
    such a directory resumes each seed. ``None`` for a single-seed run (the caller runs it)."""
    if any(a in ("-h", "--help") for a in argv):
        return None
    rest, resume = _strip_option(argv, "--resume", many=False)
    if resume:
        parent = Path(resume[0])
        seed_dirs = _seed_dirs(parent)
        if (parent / "checkpoint.pt").is_file() or not seed_dirs:
            return None
        results = [launch(command, [*rest, "--resume", str(d)]) for d in seed_dirs]
        return write_seed_summary(parent, [int(d.name.split("_", 1)[1]) for d in seed_dirs], seed_dirs, results)
    rest, seeds = _strip_option(argv, "--seed", many=True)
    if len(seeds) <= 1:
        return None
    try:
        seed_values = [int(s) for s in seeds]
    except ValueError as exc:
        raise ValueError(f"--seed takes integers, got {' '.join(seeds)}") from exc
    if len(set(seed_values)) != len(seed_values):
        raise ValueError(f"--seed lists a seed twice: {' '.join(seeds)}")
    rest, logdir = _strip_option(rest, "--logdir", many=False)
    if logdir:
        parent = Path(logdir[0])
    else:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--algo", "--method", dest="algo", default=DEFAULT_ALGO[command])
        pre.add_argument("--env", default=None)
        pre.add_argument("--dataset", default=None)
        known, _ = pre.parse_known_args(rest)
        key = known.env or known.dataset or "run"
        parent = Path("runs") / f"{known.algo}-{key.split(':')[-1].replace('/', '-')}-s{'-'.join(seeds)}"
    dirs = [parent / f"seed_{s}" for s in seed_values]
    results = [launch(command, [*rest, "--seed", str(s), "--logdir", str(d)]) for s, d in zip(seed_values, dirs)]
    return write_seed_summary(parent, seed_values, dirs, results)


def _metrics(result: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a meta-test result, flattened to ``name`` / ``name/key`` / ``name[i]`` (per-task lists and
    the task lists left out)."""
    out: dict[str, float] = {}
    if isinstance(result, bool):
        return out
    if isinstance(result, (int, float)):
        out[prefix] = float(result)
    elif isinstance(result, dict):
        for key, value in result.items():
            if key not in ("tasks", "returns_by_task", "metatest_seed", "n_tasks", "seed"):
                out.update(_metrics(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(result, list) and 0 < len(result) <= 50 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in result):
        out.update({f"{prefix}[{i}]": float(v) for i, v in enumerate(result)})
    return out


def write_seed_summary(parent: str | os.PathLike, seeds: Sequence[int], run_dirs: Sequence[str | os.PathLike],
                       results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``parent/metatest_summary.json``: every number of the seeds' meta-tests with its mean, standard
    deviation and 95% interval over seeds (Student's t); returns it (also printed)."""
    settings: set[str] = set()
    config_file = Path(run_dirs[0]) / "config.yaml"
    if config_file.is_file():  # settings echoed in the result (inner_lr, iterations, ...) are not results
        settings = set(yaml.safe_load(config_file.read_text()) or {})
    per_seed = [_metrics(r) for r in results]
    names = [k for k in per_seed[0] if all(k in m for m in per_seed)
             and "ci95" not in k and k.split("/")[0].split("[")[0] not in settings]
    metrics = {}
    for name in names:
        values = np.array([m[name] for m in per_seed])
        metrics[name] = {"mean": float(values.mean()), "ci95": ci95(values, student_t=True),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "values": values.tolist()}
    summary = {"seeds": list(map(int, seeds)), "runs": [str(d) for d in run_dirs],
               "interval": "95% over seeds, Student's t", "metrics": metrics}
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / (SUMMARY_NAME + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, parent / SUMMARY_NAME)
    shown = [n for n in names if not n.startswith(("train_seconds", "env_steps", "gradient_steps"))][:12]
    lines = [f"over seeds {' '.join(map(str, seeds))} (mean +/- 95% interval, Student's t):"]
    lines += [f"  {n}: {metrics[n]['mean']:.4g} +/- {metrics[n]['ci95']:.3g}" for n in shown]
    print("\n".join(lines + [f"  ... all in {parent / SUMMARY_NAME}"]), file=sys.stderr)
    return summary
