"""Building a few-shot meta-algorithm from its settings (the launcher's few-shot kind).

    metarl fewshot --algo maml --dataset sinusoid --seed 0 --logdir runs/maml-sin
    metarl fewshot --algo protonet --dataset omniglot --seed 0 --logdir runs/proto
    metarl fewshot --resume runs/proto          # continue a stopped run (or: metarl train --resume)

The runs go through the shared launcher (:mod:`metarl.launcher`) and outer loop
(:func:`metarl.training.run_meta_training`), like the RL algorithms; the few-shot records of
:mod:`metarl.registry` name :func:`build_algorithm` and :func:`metatest_only_settings`.
"""

from __future__ import annotations

from pathlib import Path

from metarl.fewshot.config import FewShotConfig, check_algo_dataset
from metarl.fewshot.text import LabelledTexts, load_text_dataset, text_class_split
from metarl.fewshot.algorithms import FewShotClassification, MANNMetaLearning, SinusoidMetaLearning
from metarl.fewshot.omniglot import LabelledImages, default_omniglot_path, load_omniglot
from metarl.algorithm import MetaAlgorithm

__all__ = ["build_algorithm", "metatest_only_settings", "omniglot_splits", "text_splits"]


def omniglot_splits(settings: FewShotConfig) -> tuple[LabelledImages, LabelledImages]:
    """(meta-training classes, held-out classes) of a run: split by alphabet, rotations for training only."""
    path = Path(settings.data) if settings.data else default_omniglot_path()
    characters = load_omniglot(path, settings.image_size)
    train = characters.select_alphabets(settings.train_alphabets).classes(rotations=settings.rotations)
    test = characters.select_alphabets(settings.test_alphabets).classes(rotations=False)
    return train, test


def text_splits(settings: FewShotConfig) -> tuple[dict[str, LabelledTexts], dict[str, LabelledTexts]]:
    """(meta-training intents, meta-test intents) of a text run, by dataset: the training datasets' training
    intents, and the held-out intents of ``test_datasets`` (default: the training datasets). A dataset is a shared
    one (banking77, clinc150; with ``--data`` a copy of it in its format when it is the only one) or ``text``, a
    user's file (``--data``), split by intent (:func:`metarl.fewshot.text.text_class_split`)."""
    names = list(dict.fromkeys((*settings.dataset, *(settings.test_datasets or settings.dataset))))
    splits = {}
    for name in names:
        # --data is the user's file for "text", and for a run on one shared dataset a copy of it in its format
        source = settings.data if name == "text" or (settings.data and settings.dataset == (name,)) else name
        splits[name] = text_class_split(load_text_dataset(source), None if name == "text" else name)
    train = {name: splits[name][0] for name in settings.dataset}
    return train, {name: splits[name][1] for name in settings.test_datasets or settings.dataset}


def build_algorithm(settings: FewShotConfig, algo: str) -> MetaAlgorithm:
    """The :class:`~metarl.training.MetaAlgorithm` of few-shot learner ``algo`` (loads the data it needs)."""
    settings.validate()
    for dataset in settings.dataset:
        check_algo_dataset(algo, dataset)
    if settings.kind == "sinusoid":
        return SinusoidMetaLearning(settings, algo)
    if settings.kind == "text":
        return FewShotClassification(settings, algo, *text_splits(settings))
    train, test = omniglot_splits(settings)
    if algo == "mann":
        return MANNMetaLearning(settings, algo, train, test)
    return FewShotClassification(settings, algo, train, test)


def metatest_only_settings(settings: FewShotConfig, algo: str) -> tuple[str, ...]:
    """The settings of a few-shot run that only its meta-test reads (a resumed run may change them)."""
    if settings.kind == "sinusoid":
        return SinusoidMetaLearning.metatest_only_settings
    return (MANNMetaLearning if algo == "mann" else FewShotClassification).metatest_only_settings
