"""Several seeds of one run: ``metarl train ... --seed 0 1 2`` and ``metarl.train(..., seed=[0, 1, 2])``.

Each seed runs into ``DIR/seed_<s>`` (the same run as ``--seed s`` alone); ``DIR/metatest_summary.json``
holds every number of the seeds' meta-tests with its mean, standard deviation and 95% interval over seeds
(Student's t). ``DIR/seeds.yaml``, written before the first seed starts, lists the seeds and their shared
settings: ``--resume DIR`` of such a directory resumes the seeds that started, starts those that had not,
and rewrites the summary. The launcher (:mod:`metarl.launcher`) runs the seeds on parsed settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metarl.returns import ci95
from metarl.rundir import write_json_atomic, write_yaml_atomic

__all__ = ["write_seed_summary", "write_seed_list", "read_seed_list", "seed_dir", "SUMMARY_NAME", "SEEDS_NAME"]

#: the file a multi-seed run writes into its directory at the end
SUMMARY_NAME = "metatest_summary.json"
#: the file that makes a directory a multi-seed run (written before its first seed starts)
SEEDS_NAME = "seeds.yaml"


def seed_dir(parent: str | os.PathLike, seed: int) -> Path:
    """Where seed ``seed`` of a multi-seed run in ``parent`` runs."""
    return Path(parent) / f"seed_{int(seed)}"


def write_seed_list(parent: str | os.PathLike, algo: str, seeds: Sequence[int], settings: Mapping[str, Any]) -> Path:
    """Record a multi-seed run in ``parent/seeds.yaml`` before its first seed starts: the algorithm, every seed
    and the settings they share, so ``--resume parent`` finishes every seed (also those that had not started)."""
    return write_yaml_atomic(Path(parent) / SEEDS_NAME, {"algo": algo, "seeds": [int(s) for s in seeds],
                                                         "settings": dict(settings)},
                             header="# A multi-seed run: each seed in seed_<s>/; `metarl train --resume DIR` "
                                    "finishes all of them.\n", make_parents=True)


def read_seed_list(parent: str | os.PathLike) -> dict[str, Any] | None:
    """``{"algo", "seeds", "settings"}`` of a multi-seed run directory, or ``None`` if ``parent`` is not one.

    Raises:
        ValueError: ``seeds.yaml`` is damaged.
    """
    path = Path(parent) / SEEDS_NAME
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
        ok = isinstance(data, dict) and isinstance(data.get("algo"), str) and isinstance(data.get("settings"), dict) \
            and isinstance(data.get("seeds"), list) and all(isinstance(s, int) for s in data["seeds"]) and data["seeds"]
    except (OSError, yaml.YAMLError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is damaged (it should list the algorithm, seeds and settings of the multi-seed run); "
                         "resume each seed_<s> directory on its own")
    return data


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
    write_json_atomic(parent / SUMMARY_NAME, summary, make_parents=True)
    shown = [n for n in names if not n.startswith(("train_seconds", "env_steps", "gradient_steps"))][:12]
    lines = [f"over seeds {' '.join(map(str, seeds))} (mean +/- 95% interval, Student's t):"]
    lines += [f"  {n}: {metrics[n]['mean']:.4g} +/- {metrics[n]['ci95']:.3g}" for n in shown]
    print("\n".join(lines + [f"  ... all in {parent / SUMMARY_NAME}"]), file=sys.stderr)
    return summary
