"""Settings of a continual-learning run: :class:`ContinualConfig`, one dataclass for every method.

The method (``--algo``/``--method``: oml, oml-er, er, finetune, pretrain, iid) decides how the
representation is trained: OML meta-training for ``oml``/``oml-er``, supervised i.i.d. pretraining for
``pretrain``/``finetune``/``er``/``iid``. Each method's settings per dataset are presets in
``metarl/presets/<method>.yaml``, keyed by dataset.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from metarl.config import field
from metarl.fewshot.config import OmniglotRunConfig

__all__ = ["ContinualConfig", "CONTINUAL_METHODS", "REPRESENTATION", "CONTINUAL_DATASETS"]

#: every continual method, in the order tables and figures list them
CONTINUAL_METHODS = ("oml", "oml-er", "pretrain", "finetune", "er", "iid")
#: how each method's representation is trained: OML meta-training or i.i.d. pretraining
REPRESENTATION = {"oml": "oml", "oml-er": "oml", "pretrain": "pretrain", "finetune": "pretrain", "er": "pretrain",
                  "iid": "pretrain"}
CONTINUAL_DATASETS = ("omniglot", "sinusoid")


@dataclass
class ContinualConfig(OmniglotRunConfig):
    """Everything that defines a continual-learning run (generic defaults; presets per method and dataset)."""

    dataset: Literal["omniglot", "sinusoid"] = field(
        "omniglot", "class-incremental Omniglot, or incremental sine regression (OML's two benchmarks)")
    iterations: int = field(20000, "meta-iterations (OML) or supervised steps (pretraining)", bounds="[0, inf)")
    checkpoint_every: int = field(1000, "iterations between checkpoints", bounds="[1, inf)")
    metatest_seed: int = field(2024, "seed of the test streams (the same for every run and method)",
                               bounds="[0, 4294967295]")
    # ---- the network: representation (RLN) + linear prediction network (PLN)
    hidden: int = field(64, "RLN width: filters per conv layer (omniglot), units per layer (sinusoid)",
                        bounds="[1, inf)")
    rln_layers: int = field(4, "RLN layers: 3x3 stride-2 convolutions (omniglot) or ReLU layers (sinusoid)",
                            bounds="[1, inf)")
    # ---- OML meta-training
    traj_classes: int = field(3, "classes (sinusoid: functions) per meta-training trajectory", bounds="[1, inf)")
    traj_shots: int = field(5, "single-example inner steps per class (sinusoid: batches of batch_size points per "
                               "function) in the trajectory", bounds="[1, inf)")
    remember_size: int = field(64, "examples of random classes in the meta-loss besides the trajectory's classes' "
                                   "held-out examples (sinusoid: fresh points per function)", bounds="[0, inf)")
    inner_lr: float = field(0.03, "OML's inner SGD step size on the PLN", bounds="(0, inf)")
    first_order: bool = field(False, "OML: treat the inner gradients as constants (first-order meta-gradient)")
    outer_lr: float = field(1e-4, "Adam learning rate of the meta-update (OML) or the supervised update (pretraining)",
                            bounds="(0, inf)")
    batch_size: int = field(64, "pretraining mini-batch (sinusoid: also the points per stream batch)",
                            bounds="[1, inf)")
    # ---- data
    stream_drawings: int = field(15, "drawings per class shown in a stream (the class's other drawings measure "
                                     "generalisation); training uses only these drawings", bounds="[1, 19]")
    # ---- meta-test protocol
    stream_lengths: tuple[int, ...] = field((10, 25, 50, 100), "classes per Omniglot test stream (one result per "
                                                                "length); sinusoid: ignored", bounds="[1, inf)")
    sine_functions: int = field(10, "sinusoid: functions learned one after another", bounds="[1, inf)")
    sine_batches: int = field(40, "sinusoid: stream batches (of batch_size points) per function", bounds="[1, inf)")
    metatest_streams: int = field(20, "test streams per stream length", bounds="[2, inf)")
    eval_methods: tuple[str, ...] | None = field(None, "methods meta-tested at the end (default: every method that uses "
                                              "this run's representation, and iid)")
    lr_candidates: tuple[float, ...] = field((0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001),
                                             "online learning rates tried per method and stream length",
                                             bounds="(0, inf)")
    lr_streams: int = field(2, "streams of the training alphabets (never the test ones) that choose the online "
                               "learning rate", bounds="[1, inf)")
    online_optimizer: Literal["adam", "sgd"] = field("adam", "optimiser of online learning (OML's evaluation: Adam)")
    memory_capacity: int = field(200, "episodic memory of er / oml-er, in examples", bounds="[1, inf)")
    replay_batch: int = field(10, "examples replayed from memory at every online step", bounds="[1, inf)")
    iid_epochs: int = field(10, "iid reference: epochs over the shuffled stream", bounds="[1, inf)")

    preset_key: typing.ClassVar[str] = "dataset"

    def unused_settings(self, algo: str) -> set[str]:
        """Omniglot's settings on sine, sine's on Omniglot."""
        if self.dataset == "sinusoid":
            return {"data", "image_size", "rotations", "train_alphabets", "test_alphabets", "stream_drawings",
                    "stream_lengths", "lr_streams"}
        return {"sine_functions", "sine_batches"}

    def validate(self) -> None:
        """Raise ``ValueError`` naming any setting that cannot run."""
        super().validate()
        unknown = sorted(set(self.eval_methods or ()) - set(CONTINUAL_METHODS))
        if unknown:
            raise ValueError(f"--eval-methods {unknown} unknown; choose from {list(CONTINUAL_METHODS)}")
        if not self.stream_lengths:
            raise ValueError("--stream-lengths needs at least one length")
        if not self.lr_candidates:
            raise ValueError("--lr-candidates needs at least one learning rate")


def methods_of(config: ContinualConfig, algo: str) -> tuple[str, ...]:
    """The methods a run of ``algo`` meta-tests: ``eval_methods``, or those sharing its representation, and iid."""
    if config.eval_methods:
        return tuple(config.eval_methods)
    own = REPRESENTATION[algo]
    return tuple(m for m in CONTINUAL_METHODS if REPRESENTATION[m] == own and m != "iid") + ("iid",)
