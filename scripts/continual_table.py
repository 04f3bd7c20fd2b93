#!/usr/bin/env python
"""One table and one figure of every continual method over several runs (seeds), from their metatest.json.

    python scripts/continual_table.py runs/oml-s0 runs/oml-s1 runs/oml-s2 runs/pretrain-s0 ... -o continual.png

Runs of the same method (different seeds) are averaged: the table gives the mean over runs and the spread
(min-max) of the run means; the figure draws the mean with a 95% band over runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from metarl.continual.plots import merge_results, plot_continual


def load_results(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """The metatest.json of each run directory (one dataset)."""
    results = []
    for run in run_dirs:
        path = run / "metatest.json" if run.is_dir() else run
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"continual_table: cannot read {path}: {exc}") from None
    datasets = {r.get("dataset") for r in results}
    if len(datasets) != 1 or None in datasets:
        raise SystemExit(f"continual_table: give runs of one continual dataset, got {sorted(map(str, datasets))}")
    return results


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Mean over runs (and the range of the run means) per method and stream length."""
    merged = merge_results(results)
    if results[0]["dataset"] == "sinusoid":
        lines = ["| method | runs | MSE after all functions (mean over runs) | range over runs |", "| --- | --- | --- | --- |"]
        for label, entries in merged.items():
            values = np.array([e["mse"]["mean"] for e in entries])
            cell = f"{values.mean():.3f}"
            diverged = sum(e.get("diverged", 0) for e in entries)
            if diverged:  # a run with a diverged sequence has an infinite mean: give the others' too
                converged = np.array([(e.get("mse_converged") or {"mean": np.nan})["mean"] for e in entries])
                cell += f" ({diverged} of {sum(r['streams'] for r in results if label.split(' ')[0] in r['methods'])} " \
                        f"sequences diverged; the others {np.nanmean(converged):.3f})"
            lines.append(f"| {label} | {len(values)} | {cell} | {values.min():.3f} - {values.max():.3f} |")
        return "\n".join(lines)
    lengths = sorted({k for entries in merged.values() for e in entries for k in e["generalisation"]}, key=int)
    header = "| method | runs | " + " | ".join(f"N={n} held-out (streamed)" for n in lengths) + " |"
    lines = [header, "| --- | --- | " + " | ".join("---" for _ in lengths) + " |"]
    for label, entries in merged.items():
        cells = []
        for n in lengths:
            gen = np.array([e["generalisation"][n]["mean"] for e in entries if n in e["generalisation"]])
            mem = np.array([e["memorisation"][n]["mean"] for e in entries if n in e["memorisation"]])
            spread = f" [{gen.min():.3f}-{gen.max():.3f}]" if len(gen) > 1 else ""
            cells.append(f"{gen.mean():.3f}{spread} ({mem.mean():.3f})")
        lines.append(f"| {label} | {len(entries)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or metatest.json files)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the figure to this PNG")
    args = parser.parse_args(argv)
    results = load_results(args.runs)
    table = markdown_table(results)
    print(table)
    if args.output is not None:
        plot_continual(results, args.output)
        print(f"figure: {args.output}")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
