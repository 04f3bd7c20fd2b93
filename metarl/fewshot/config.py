"""Settings of a few-shot run: :class:`FewShotConfig`, one dataclass for every few-shot learner.

Each learner's settings per dataset (the ones behind ``docs/results/fewshot.md``) are presets in
``metarl/presets/<algo>.yaml``, keyed by dataset.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from metarl.config import RunConfig, field
from metarl.fewshot.omniglot import SMALL1_ALPHABETS, SMALL2_ONLY_ALPHABETS

__all__ = ["FewShotConfig", "OmniglotRunConfig", "FEWSHOT_ALGORITHMS", "GRADIENT_METHODS", "DATASETS", "check_algo_dataset"]

FEWSHOT_ALGORITHMS = ("maml", "fomaml", "metasgd", "protonet", "mann")
GRADIENT_METHODS = ("maml", "fomaml", "metasgd")
DATASETS = ("sinusoid", "omniglot", "banking77", "clinc150", "text")
#: the text datasets: the two shared ones, and ``text`` (a user's file given with ``--data``)
TEXT_DATASETS = ("banking77", "clinc150", "text")


def check_algo_dataset(algo: str, dataset: str) -> None:
    """Raise ``ValueError`` if few-shot learner ``algo`` does not apply to ``dataset`` (one of a run's datasets)."""
    if dataset in TEXT_DATASETS and algo == "mann":
        raise ValueError(f"--algo mann reads image sequences; on --dataset {dataset} use protonet, maml or fomaml")
    if dataset == "sinusoid" and algo not in GRADIENT_METHODS:
        raise ValueError(f"--algo {algo} does not apply to --dataset sinusoid: protonet and mann are classifiers "
                         "(use --dataset omniglot); sinusoid supports maml, fomaml and metasgd")


@dataclass
class OmniglotRunConfig(RunConfig):
    """The Omniglot settings of few-shot and continual runs: where the data is, its size, the alphabet split."""

    data: str | None = field(None, "Omniglot directory or zip (default: $METARL_OMNIGLOT or ../shared/data/omniglot); "
                                   "text: a CSV (text,label), CLINC-layout JSON or folder (--dataset text)")
    image_size: int = field(28, "Omniglot images are resized to image_size x image_size", bounds="[4, inf)")
    rotations: bool = field(True, "add the 90/180/270-degree rotations of training characters as training classes")
    train_alphabets: tuple[str, ...] = field(SMALL1_ALPHABETS, "Omniglot alphabets used for (meta-)training")
    test_alphabets: tuple[str, ...] = field(SMALL2_ONLY_ALPHABETS, "held-out Omniglot alphabets for the meta-test")

    def validate(self) -> None:
        """Raise ``ValueError`` naming any setting that cannot train."""
        super().validate()
        overlap = sorted(set(self.train_alphabets) & set(self.test_alphabets))
        if overlap:
            raise ValueError(f"alphabets {overlap} are both training and held-out alphabets; the meta-test must use "
                             "alphabets never seen in training")


@dataclass
class FewShotConfig(OmniglotRunConfig):
    """Everything that defines a few-shot meta-training run (generic defaults; presets per algorithm and dataset)."""

    dataset: tuple[Literal["sinusoid", "omniglot", "banking77", "clinc150", "text"], ...] = field(
        ("sinusoid",), "sinusoid regression, Omniglot, or intent classification (banking77, clinc150, text: --data "
                       "FILE); several text datasets train together (--dataset clinc150 banking77), episodes drawn "
                       "per dataset")
    test_datasets: tuple[Literal["banking77", "clinc150", "text"], ...] | None = field(
        None, "text: meta-test on the held-out intents of these datasets (default: the training datasets'); "
              "--dataset clinc150 --test-datasets banking77 tests a domain never seen in training")
    encoder: Literal["wordllama", "minilm"] = field("wordllama", "text datasets: the sentence encoder (metarl[text])")
    max_length: int = field(64, "text datasets: tokens kept per sentence", bounds="[1, inf)")
    trainable_layers: int = field(0, "--encoder minilm: top BERT layers the outer loop trains (0: frozen)",
                                  bounds="[0, 6]")
    lora_rank: int = field(0, "--encoder minilm: train rank-r LoRA adapters on the projections of the trainable "
                              "layers instead of their weights (0: the weights train)", bounds="[0, inf)")
    frozen_distance: float = field(0.0, "text: weight of the penalty on the squared distance of the encoder's "
                                        "trained weights from their pretrained values (L2-SP)", bounds="[0, inf)")
    metric_scale: float = field(3.0, "protonet on text: the training softmax's scale on the negative squared "
                                     "distances of unit sentence vectors (changes no prediction)", bounds="(0, inf)")
    iterations: int = field(3000, "meta-iterations (a resumed run may extend them)", bounds="[0, inf)")
    checkpoint_every: int = field(100, "meta-iterations between checkpoints", bounds="[1, inf)")
    metatest_seed: int = field(2024, "seed of the meta-test episodes (the same for every run)",
                               bounds="[0, 4294967295]")
    meta_batch_size: int = field(8, "tasks (episodes) per meta-iteration", bounds="[1, inf)")
    ways: int = field(5, "classes per training episode (N); MANN: classes per sequence", bounds="[1, inf)")
    shots: int = field(1, "support examples per class (K); sinusoid: support points per task; "
                          "MANN: presentations of each class per sequence", bounds="[1, inf)")
    queries: int = field(5, "query examples per class (sinusoid: per task) in training episodes", bounds="[0, inf)")
    inner_lr: float = field(0.4, "inner step size alpha (Meta-SGD: initial learned step size)", bounds="(0, inf)")
    inner_steps: int = field(1, "inner gradient steps in meta-training", bounds="[1, inf)")
    multi_step_loss: bool = field(False, "gradient learners: average the query loss over the states after each inner "
                                         "step (MAML++'s multi-step loss), so that every step count is trained")
    metatest_steps: int = field(1, "inner gradient steps at meta-test (and validation)", bounds="[0, inf)")
    outer_lr: float = field(1e-3, "Adam learning rate of the meta-update", bounds="(0, inf)")
    grad_clip: float = field(0.0, "clip the meta-gradient norm to this value (0: no clipping)", bounds="[0, inf)")
    metatest_tasks: int = field(1000, "meta-test episodes (sinusoid: tasks) per setting", bounds="[1, inf)")
    metatest_queries: int = field(15, "query examples per class (sinusoid: per task) at meta-test",
                                  bounds="[1, inf)")
    metatest_chunk: int = field(50, "meta-test episodes evaluated together (memory/speed trade-off)",
                                bounds="[1, inf)")
    augment: bool = field(True, "randomly rotate (+-10 deg), scale (0.9-1.1) and shift (+-2 px) every training image")
    hidden: int = field(64, "Conv-4 filters per block", bounds="[1, inf)")
    downsample: Literal["stride", "maxpool"] = field(
        "stride", "Conv-4 downsampling: stride-2 convolutions (MAML paper's Omniglot net) or 2x2 max-pooling "
                  "(ProtoNets' net, 1.6x the training time)")
    controller_size: int = field(200, "MANN/LSTM controller hidden units", bounds="[1, inf)")
    memory_slots: int = field(128, "MANN memory rows", bounds="[1, inf)")
    memory_width: int = field(40, "MANN memory row length", bounds="[1, inf)")
    read_heads: int = field(4, "MANN read heads", bounds="[1, inf)")
    lstm_baseline: bool = field(True, "MANN: also train a plain LSTM on the same episodes as the baseline")

    preset_key: typing.ClassVar[str] = "dataset"

    @property
    def kind(self) -> Literal["sinusoid", "omniglot", "text"]:
        """What the datasets hold: ``"sinusoid"``, ``"omniglot"`` or ``"text"`` (intents)."""
        return "text" if self.dataset[0] in TEXT_DATASETS else self.dataset[0]

    def validate(self) -> None:
        """Raise ``ValueError`` naming any setting that cannot train (beyond the types and bounds)."""
        super().validate()
        names = list(self.dataset)
        if len(set(names)) != len(names):
            raise ValueError(f"--dataset names a dataset twice: {' '.join(names)}")
        if len(names) > 1 and not all(n in TEXT_DATASETS for n in names):
            raise ValueError(f"only text datasets train together ({', '.join(TEXT_DATASETS)}); got --dataset "
                             f"{' '.join(names)}")
        if self.test_datasets is not None and self.kind != "text":
            raise ValueError(f"--test-datasets chooses held-out intents of text datasets; --dataset {names[0]} "
                             "meta-tests on its own held-out classes")
        if self.data and len(names) > 1 and "text" not in names:
            raise ValueError(f"--data is the file of --dataset text; with several datasets add text to them "
                             f"(--dataset {' '.join(names)} text --data {self.data})")
        if "text" in (*names, *(self.test_datasets or ())) and not self.data:
            raise ValueError("--dataset text reads your file: give --data PATH (a CSV with text,label columns, or "
                             "CLINC's JSON layout)")

    def unused_settings(self, algo: str) -> set[str]:
        """Image settings on text and sinusoid, text settings off text, MANN's off MANN, inner-loop settings of
        the learners without one (protonet, mann)."""
        unused: set[str] = set()
        if self.kind != "omniglot":
            unused |= {"image_size", "rotations", "train_alphabets", "test_alphabets", "augment", "hidden",
                       "downsample"}
        if self.kind != "text":
            unused |= {"encoder", "max_length", "trainable_layers", "metric_scale", "test_datasets", "lora_rank",
                       "frozen_distance"}
        if self.kind == "sinusoid":
            unused |= {"data", "ways"}
        if algo != "mann":
            unused |= {"controller_size", "memory_slots", "memory_width", "read_heads", "lstm_baseline"}
        if algo in ("protonet", "mann"):
            unused |= {"inner_lr", "inner_steps", "multi_step_loss", "metatest_steps"}
        return unused

