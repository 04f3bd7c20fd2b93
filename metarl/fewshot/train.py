"""``metarl fewshot`` / ``scripts/train_fewshot.py``: meta-train a few-shot learner, then meta-test it.

    python scripts/train_fewshot.py --method maml --dataset sinusoid --seed 0 --logdir runs/maml-sin
    python scripts/train_fewshot.py --method protonet --dataset omniglot --seed 0 --logdir runs/proto
    python scripts/train_fewshot.py --resume runs/proto          # continue a stopped run
    python scripts/train_fewshot.py --resume runs/maml --test-inner-steps 5   # re-test a finished run

The run shows a progress bar, writes TensorBoard curves, atomic checkpoints and
``LOGDIR/metatest.json`` through the shared outer loop (:func:`metarl.training.run_meta_training`).
Without extra flags each method uses the settings behind the numbers in ``docs/fewshot.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metarl.checkpoint import load_checkpoint
from metarl.config import add_dataclass_arguments, dataclass_from_args
from metarl.fewshot.learners import FewShotClassification, MANNMetaLearning, SinusoidMetaLearning
from metarl.fewshot.omniglot import LabelledImages, default_omniglot_path, load_omniglot
from metarl.fewshot.settings import COMMON_DEFAULTS, DEFAULTS, FewShotSettings
from metarl.system import keep_freed_memory
from metarl.training import MetaAlgorithm, run_meta_training

__all__ = ["main", "build_algorithm", "omniglot_splits", "parser", "RETEST_FIELDS"]

#: meta-test settings that ``--resume`` accepts anew (a finished run is then only meta-tested again); an
#: algorithm whose training uses them (sinusoid: they define the validation tasks) refuses the change
RETEST_FIELDS = ("test_inner_steps", "test_episodes", "test_queries", "test_chunk")


def omniglot_splits(settings: FewShotSettings) -> tuple[LabelledImages, LabelledImages]:
    """(meta-training classes, held-out classes) of a run: split by alphabet, rotations for training only."""
    path = Path(settings.data) if settings.data else default_omniglot_path()
    characters = load_omniglot(path, settings.image_size)
    train = characters.select_alphabets(settings.train_alphabets).classes(rotations=settings.rotations)
    test = characters.select_alphabets(settings.test_alphabets).classes(rotations=False)
    return train, test


def build_algorithm(settings: FewShotSettings, seed: int) -> MetaAlgorithm:
    """The :class:`~metarl.training.MetaAlgorithm` for resolved ``settings`` (loads the data it needs)."""
    if settings.dataset == "sinusoid":
        return SinusoidMetaLearning(settings, seed)
    train, test = omniglot_splits(settings)
    if settings.method == "mann":
        return MANNMetaLearning(settings, train, test, seed)
    return FewShotClassification(settings, train, test, seed)


def parser(method: str = "maml", dataset: str = "sinusoid") -> argparse.ArgumentParser:
    """The command-line parser (one flag per :class:`FewShotSettings` field plus the run's seed/logdir).

    Flags whose default depends on the method and dataset show the value for ``method`` on ``dataset``.
    """
    p = argparse.ArgumentParser(
        prog="metarl fewshot", description="meta-train a supervised few-shot learner and meta-test it",
        epilog="Flags left out take the defaults of the method and dataset (docs/fewshot.md).")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the training episodes")
    p.add_argument("--logdir", type=Path, default=None,
                   help="TensorBoard events, checkpoint.pt and metatest.json (default runs/fewshot-<method>-<dataset>-s<seed>)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the stopped run in DIR with its saved settings (--iterations may extend it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dataclass_arguments(p, FewShotSettings)
    defaults = DEFAULTS.get((dataset, method))
    if defaults is not None:
        resolved = {**COMMON_DEFAULTS, **defaults}
        for action in p._actions:  # argparse keeps no public handle on an option's help text
            if action.dest in resolved and action.help and action.help.endswith("(default: None)"):
                action.help = action.help.replace("(default: None)",
                                                  f"(default for {method} on {dataset}: {resolved[action.dest]})")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``metarl fewshot``; returns the meta-test result (also written to ``LOGDIR/metatest.json``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="maml")
    pre.add_argument("--dataset", default="sinusoid")
    known, _ = pre.parse_known_args(argv)
    args = parser(known.method, known.dataset).parse_args(argv)
    if args.resume is not None:
        saved = load_checkpoint(args.resume)["config"]
        settings = FewShotSettings.from_dict(saved)
        if args.iterations is not None:
            settings.iterations = args.iterations
        for name in RETEST_FIELDS:  # meta-test settings given now re-test the run without changing its training
            if getattr(args, name) is not None:
                setattr(settings, name, getattr(args, name))
        seed, logdir = int(saved["seed"]), args.resume
    else:
        settings = dataclass_from_args(FewShotSettings, args)
        seed = args.seed
        logdir = args.logdir or Path("runs") / f"fewshot-{settings.method}-{settings.dataset}-s{seed}"
    settings = settings.resolved()
    torch.set_num_threads(settings.threads)
    algorithm = build_algorithm(settings, seed)
    print(f"metarl fewshot: {settings.method} on {settings.dataset}, seed {seed}, "
          f"{settings.iterations} meta-iterations, logdir {logdir}", file=sys.stderr)
    keep_freed_memory()  # no page-fault churn from per-iteration arrays (metarl/system.py)
    return run_meta_training(algorithm, iterations=settings.iterations, seed=seed, logdir=logdir,
                             resume=args.resume is not None, checkpoint_every=settings.checkpoint_every,
                             progress=not args.no_progress)
