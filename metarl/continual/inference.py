"""Using a continual learner on your own stream: load a run's representation (or a fresh one) as an online learner.

    learner = metarl.continual.load_learner("runs/oml")           # OML's representation, frozen
    for image, label in stream:                                   # arrays as read from the PNG files
        learner.learn(image[None], [label])
    learner.predict(images)

    er = metarl.continual.load_learner("runs/pretrain", method="er", memory_capacity=200)
    er.update((images, labels))                                   # replay a batch from memory, then remember
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from metarl.checkpoint import CheckpointError
from metarl.registry import SavedRun, load
from metarl.continual.algorithm import build_network
from metarl.continual.config import CONTINUAL_METHODS, REPRESENTATION, ContinualConfig
from metarl.continual.evaluation import make_learner
from metarl.continual.learner import ContinualLearner

__all__ = ["load_learner", "learner_from_run"]

#: online learning rate of a learner whose run has no meta-test to take the chosen one from
DEFAULT_LR = {"omniglot": 1e-3, "sinusoid": 3e-3}


def _chosen_lr(run_dir: Path, method: str) -> float | None:
    """The learning rate the run's meta-test chose for ``method`` (the longest stream's), if it has one."""
    try:
        result = json.loads((run_dir / "metatest.json").read_text())
        chosen = result["methods"][method]["lr"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(chosen, dict):
        return float(chosen[max(chosen, key=int)])
    return float(chosen)


def load_learner(run_dir: str | os.PathLike | None = None, *, method: str | None = None, lr: float | None = None,
                 memory_capacity: int | None = None, dataset: str = "omniglot", seed: int = 0,
                 best: bool = False) -> ContinualLearner:
    """An online learner on a run's trained representation, or on a fresh one (``run_dir=None``).

    Args:
        run_dir: a ``metarl continual`` run directory (or checkpoint file); ``None`` for a randomly
            initialised network with the generic settings of ``dataset``.
        method: the online rule (default: the run's method): ``oml``/``pretrain`` learn the PLN on the frozen
            representation, ``oml-er`` adds replay, ``finetune`` learns the whole network, ``er`` adds replay.
        lr: online learning rate (default: the one the run's meta-test chose for ``method`` at its longest
            stream, else 1e-3 for Omniglot and 3e-3 for sine).
        memory_capacity: episodic memory size for ``er``/``oml-er`` (default: the run's).
        seed: draws the fresh output rows and the memory's choices.

    Omniglot learners take images as read from the PNG files (any size, bool/uint8/float) and apply the
    run's preprocessing; sine learners take ``(n, functions + 1)`` inputs (one-hot function index, then x).

    Raises:
        CheckpointError: ``run_dir`` holds no continual run.
        ValueError: an unknown method.
    """
    if run_dir is None:
        config = ContinualConfig(dataset=dataset, seed=seed)
        config.validate()
        return _online_learner(config, build_network(config, 1, torch.Generator().manual_seed(seed)), method or "oml",
                               None, lr=lr, memory_capacity=memory_capacity, seed=seed)
    return load(run_dir, best=best, kind="continual", method=method, lr=lr, memory_capacity=memory_capacity, seed=seed)


def learner_from_run(run: SavedRun, *, method: str | None = None, lr: float | None = None,
                     memory_capacity: int | None = None, seed: int = 0) -> ContinualLearner:
    """The online learner of a trained continual run (the continual records' ``load``); the options are
    :func:`load_learner`'s. Loads the network alone: a learner needs no training data.

    Raises:
        CheckpointError: the checkpoint does not hold the network its settings describe.
        ValueError: an unknown method.
    """
    config, state = run.config, run.state
    try:
        weights = state["algorithm"]["network"]
        network = build_network(config, int(weights["pln.weight"].shape[0]), torch.Generator())
        network.load_state_dict(weights)
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"{run.path}: its checkpoint does not hold the {run.algo} network its settings "
                              f"describe ({type(exc).__name__}); it is damaged or from another version") from exc
    # an iid run's online learner is its representation's (the iid reference learns offline)
    algo = method or (REPRESENTATION[run.algo] if run.algo == "iid" else run.algo)
    chosen = _chosen_lr(run.path if run.path.is_dir() else run.path.parent, algo)
    return _online_learner(config, network, algo, chosen, lr=lr, memory_capacity=memory_capacity, seed=seed)


def _online_learner(config: ContinualConfig, network: Any, algo: str, chosen: float | None, *, lr: float | None,
                    memory_capacity: int | None, seed: int) -> ContinualLearner:
    if algo not in CONTINUAL_METHODS or algo == "iid":
        raise ValueError(f"method {algo!r} has no online learner; choose from "
                         f"{[m for m in CONTINUAL_METHODS if m != 'iid']}")
    if memory_capacity is not None:
        config = ContinualConfig(**{**config.__dict__, "memory_capacity": memory_capacity})
        config.validate()
    rate = lr if lr is not None else chosen if chosen is not None else DEFAULT_LR[config.dataset]
    preprocess = _image_preprocess(config.image_size) if config.dataset == "omniglot" else None
    learner = make_learner(network, algo, rate, config, seed, preprocess=preprocess)
    if memory_capacity is not None and learner.memory is None:
        raise ValueError(f"method {algo!r} has no episodic memory; memory_capacity applies to er and oml-er")
    return learner


def _image_preprocess(image_size: int) -> Any:
    from metarl.fewshot.omniglot import preprocess_images

    def preprocess(images: Any) -> torch.Tensor:
        return preprocess_images(images, image_size)  # one image or a batch, as the few-shot learners take them

    return preprocess
