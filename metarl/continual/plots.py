"""Figures of continual meta-tests: accuracy (Omniglot) or MSE (sine) against the number of classes
(functions) learned, one line per method, with the 95% interval as a band."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl.continual.config import CONTINUAL_METHODS

__all__ = ["plot_continual", "merge_results"]


def merge_results(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """method -> the per-run entries of every result that evaluated it (several runs: several seeds)."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for method, entry in result["methods"].items():
            label = method if method != "iid" else f"iid ({result['representation']})"
            merged.setdefault(label, []).append(entry)
    order = {m: i for i, m in enumerate(CONTINUAL_METHODS)}
    return dict(sorted(merged.items(), key=lambda kv: order.get(kv[0].split(" ")[0], len(order))))


def _curve(entries: list[dict[str, Any]], metric: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs and the half-width of a 95% band (over runs if several, else the run's own interval)."""
    values = np.array([[entry[metric][k]["mean"] for k in keys] for entry in entries])
    if len(entries) > 1:
        half = 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(entries))
    else:
        half = np.array([entries[0][metric][k]["ci95"] for k in keys])
    return values.mean(axis=0), np.nan_to_num(half)


def plot_continual(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Draw the meta-test results (one run's, or several runs' of the same dataset) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = {r["dataset"] for r in results}
    if len(datasets) != 1:
        raise ValueError(f"results of different datasets {sorted(datasets)} cannot share one figure")
    merged = merge_results(results)
    path = Path(path)
    if datasets == {"sinusoid"}:
        fig, axes = plt.subplots(1, 1, figsize=(5.5, 4))
        panels = [(axes, "mse_by_functions", "MSE over the functions learned so far", "functions learned")]
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        panels = [(axes[0], "generalisation", "accuracy on held-out drawings", "classes learned"),
                  (axes[1], "memorisation", "accuracy on the streamed drawings", "classes learned")]
    for ax, metric, ylabel, xlabel in panels:
        for label, entries in merged.items():
            keys = sorted(entries[0][metric], key=int)
            x = np.array([int(k) for k in keys])
            mean, half = _curve(entries, metric, keys)
            diverged = sum(entry.get("diverged", 0) for entry in entries)
            shown = f"{label} ({diverged} sequences diverged, not drawn)" if diverged else label
            line, = ax.plot(x, mean, marker="o", label=shown, linestyle="--" if label.startswith("iid") else "-")
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if metric == "mse_by_functions":
            ax.set_yscale("log")
    axes_list = panels[0][0]
    axes_list.legend(fontsize=8)
    runs = max(len(entries) for entries in merged.values())
    fig.suptitle(f"continual {datasets.pop()}: mean over {runs} seed(s) per method, 95% band", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
