"""Episodic classification (Omniglot images, intent texts) as a :class:`~metarl.training.MetaAlgorithm`: MAML,
first-order MAML, Meta-SGD and ProtoNets on N-way K-shot episodes, and the held-out meta-test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.data import EpisodicSampler, mean_and_ci95
from metarl.fewshot.learners import METATEST_SETTINGS, GradientLearner, build_classifier, classifier_query_logits
from metarl.fewshot.omniglot import LabelledImages, random_affine
from metarl.fewshot.outer import OuterAdam, TrainedModule
from metarl.fewshot.text import LabelledTexts, TokenisedTexts, text_encoder_of

__all__ = ["FewShotClassification", "accuracy"]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-task accuracy ``(tasks,)`` of ``(tasks, queries, ways)`` logits."""
    return (logits.argmax(-1) == labels).float().mean(-1)


def _metatest_samplers(test: Any, settings: FewShotConfig, dataset: str | None = None) -> dict[str, EpisodicSampler]:
    """The meta-test's episode samplers (5-way 1-shot, 5-way 5-shot, 20-way 1-shot) of held-out classes ``test``
    (of text ``dataset``). A user's text file (``text``) too small for some of them is tested on those it has
    the classes for; the shared datasets must have them all.

    Raises:
        ValueError: no setting fits the held-out classes (what is needed, in numbers).
    """
    samplers, errors = {}, {}
    for key, (ways, shots) in METATEST_SETTINGS.items():
        try:
            samplers[key] = EpisodicSampler(test.labels, ways=ways, shots=shots, queries=settings.metatest_queries)
        except ValueError as exc:
            errors[key] = exc
    if errors and (dataset != "text" or not samplers):
        key = "5w5s" if "5w5s" in errors and dataset != "text" else next(iter(errors))
        ways, shots = METATEST_SETTINGS[key]
        needed = shots + settings.metatest_queries
        raise ValueError(f"the meta-test's {key} episodes need {ways} held-out classes with at least {needed} examples "
                         f"each ({shots} support + --metatest-queries {settings.metatest_queries}); the held-out "
                         f"third of this dataset has {test.num_classes} classes: give at least {3 * ways} classes "
                         f"with {needed}+ examples each, or lower --metatest-queries") from errors[key]
    return samplers


class FewShotClassification(TrainedModule):
    """Episodic meta-training of MAML / first-order MAML / Meta-SGD / ProtoNets on Omniglot or intent texts.

    Args:
        settings: the run's settings.
        train: meta-training classes (e.g. the background alphabets with rotations); text: the training intents
            of each training dataset, by name (several: an episode's intents come from one of them, chosen
            uniformly).
        test: held-out classes for the meta-test (e.g. held-out alphabets, no rotations); text: the held-out
            intents of each test dataset, by name, each meta-tested on its own. Texts are tokenised once here with
            the learner's encoder (episodes index the id tensor).
    """

    metatest_only_settings = ("metatest_steps", "metatest_tasks", "metatest_queries", "metatest_chunk",
                              "test_datasets")

    def __init__(self, settings: FewShotConfig, algo: str, train: LabelledImages | Mapping[str, LabelledTexts],
                 test: LabelledImages | Mapping[str, LabelledTexts]):
        super().__init__(settings, algo)
        self.module = build_classifier(settings, algo, torch.Generator().manual_seed(settings.seed))
        groups = None
        if isinstance(train, Mapping):
            encoder = text_encoder_of(self.module)
            parts = [TokenisedTexts.of(part, encoder) for part in train.values()]
            train = TokenisedTexts.concatenate(parts, names=list(train))
            groups = np.repeat(np.arange(len(parts)), [len(p.labels) for p in parts])
            test = {name: TokenisedTexts.of(part, encoder) for name, part in test.items()}
        self.train_data = train
        #: held-out classes by test dataset (``{"": ...}`` for images)
        self.test_sets: dict[str, Any] = dict(test) if isinstance(test, Mapping) else {"": test}
        if not any(p.requires_grad for p in self.module.parameters()) and settings.iterations > 0:
            raise ValueError(f"{algo} with a frozen {settings.encoder} encoder has nothing to meta-train: run "
                             "--iterations 0 for the frozen-encoder baseline, or --trainable-layers N (minilm)")
        # training episodes (none for a frozen baseline, --iterations 0: its training classes need not fit them)
        self.sampler = EpisodicSampler(train.labels, ways=settings.ways, shots=settings.shots, queries=settings.queries,
                                       groups=groups) if settings.iterations > 0 else None
        # test samplers are built now so that a too-small held-out split fails before training, not after
        self.test_samplers = {name: _metatest_samplers(data, settings, name or None)
                              for name, data in self.test_sets.items()}
        self.optimizer = OuterAdam(self.module, settings.outer_lr)

    @property
    def test_data(self) -> Any:
        """The held-out classes of the first test dataset (the only one unless ``test_datasets`` names several)."""
        return next(iter(self.test_sets.values()))

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        self.module.train()
        if self.sampler is None:
            raise ValueError("this learner was built with iterations=0 (a frozen baseline, no training episodes): "
                             "build it with iterations > 0 to meta-train")
        batch = self.sampler.sample_batch(self.train_data.inputs, rng, s.meta_batch_size)
        if isinstance(self.train_data, TokenisedTexts):  # episodes padded to their own longest sentence
            length = max(1, int((torch.cat([batch.support_inputs, batch.query_inputs], -2) >= 0).sum(-1).max()))
            batch = batch._replace(support_inputs=batch.support_inputs[..., :length],
                                   query_inputs=batch.query_inputs[..., :length])
        if s.augment and s.kind == "omniglot":
            batch = batch._replace(support_inputs=random_affine(batch.support_inputs, rng),
                                   query_inputs=random_affine(batch.query_inputs, rng))
        if s.multi_step_loss and isinstance(self.module, GradientLearner):
            loss, logits = self.module.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                                  batch.query_labels, steps=s.inner_steps, multi_step=True, ways=s.ways)
        else:
            logits = classifier_query_logits(self.module, batch, s.ways, steps=s.inner_steps)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.query_labels.flatten())
        metrics = {"train/query_loss": loss.item(),
                   "train/query_accuracy": float(accuracy(logits, batch.query_labels).mean()),
                   "samples": s.meta_batch_size * s.ways * (s.shots + s.queries)}
        if s.kind == "text" and s.frozen_distance > 0:  # L2-SP: stay near the pretrained encoder
            distance = text_encoder_of(self.module).distance_from_pretrained(
                torch.cat([batch.support_inputs.flatten(), batch.query_inputs.flatten()]))
            loss = loss + s.frozen_distance * distance
            metrics["train/distance_from_pretrained"] = distance.item()
        self._step(loss)
        return metrics

    def test_inputs(self, dataset: str | None = None) -> torch.Tensor:
        """What meta-test episodes of test dataset ``dataset`` (default: the first) index: the images, or for text
        every test sentence embedded once (in chunks; the encoder is fixed during adaptation, so an episode needs
        no encoder pass of its own)."""
        data = self.test_sets[dataset] if dataset is not None else self.test_data
        if not isinstance(data, TokenisedTexts):
            return data.inputs
        from metarl.fewshot.text_encoders import embed_texts

        return embed_texts(text_encoder_of(self.module), data.inputs)

    def evaluate(self, ways: int, shots: int, episodes: int, rng: np.random.Generator,
                 inputs: torch.Tensor | None = None, dataset: str | None = None) -> np.ndarray:
        """Per-episode query accuracy on ``episodes`` held-out ``ways``-way ``shots``-shot episodes of test dataset
        ``dataset`` (default: the first; ``inputs``: its :meth:`test_inputs`, computed here when not given)."""
        data = self.test_sets[dataset] if dataset is not None else self.test_data
        sampler = EpisodicSampler(data.labels, ways=ways, shots=shots, queries=self.settings.metatest_queries)
        inputs = self.test_inputs(dataset) if inputs is None else inputs
        self.module.eval()
        accuracies = []
        chunk = self.settings.metatest_chunk
        with torch.no_grad():
            for start in range(0, episodes, chunk):
                batch = sampler.sample_batch(inputs, rng, min(chunk, episodes - start))
                logits = classifier_query_logits(self.module, batch, ways, steps=self.settings.metatest_steps,
                                                 first_order=True)
                accuracies.append(accuracy(logits, batch.query_labels))
        self.module.train()
        return torch.cat(accuracies).numpy()

    def meta_test(self) -> dict[str, Any]:
        """Accuracy on held-out episodes of every setting of ``METATEST_SETTINGS``, keyed ``"5w1s"``, ...; with
        several test datasets, keyed ``"<dataset>/5w1s"``, ... (each dataset's episodes are those a run on it
        alone meta-tests)."""
        s = self.settings
        accuracy, interval, skipped = {}, {}, {}
        several = len(self.test_sets) > 1
        for name, data in self.test_sets.items():
            inputs = self.test_inputs(name)
            prefix = f"{name}/" if several else ""
            for i, (key, (ways, shots)) in enumerate(METATEST_SETTINGS.items()):
                if key not in self.test_samplers[name]:  # a user's small file: the settings it has the intents for
                    skipped[prefix + key] = f"needs {ways} held-out classes"
                    continue
                rng = np.random.default_rng([s.metatest_seed, i])
                accuracy[prefix + key], interval[prefix + key] = mean_and_ci95(
                    self.evaluate(ways, shots, s.metatest_tasks, rng, inputs, name))
        counts = {name: data.num_classes for name, data in self.test_sets.items()}
        out = {"accuracy": accuracy, "accuracy_ci95": interval, "test_episodes": s.metatest_tasks,
               "test_queries_per_class": s.metatest_queries,
               "test_classes": counts if several else self.test_data.num_classes}
        if skipped:
            out["settings_skipped"] = skipped
        if isinstance(self.test_data, TokenisedTexts):
            out["test_datasets"] = list(self.test_sets)
            intents = {name: list(data.class_names) for name, data in self.test_sets.items()}
            out["test_intents"] = intents if several else intents[next(iter(intents))]
            out["encoder"] = s.encoder
        return out

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        where = f" of {', '.join(result['test_datasets'])}" if "test_datasets" in result else ""
        lines = [f"{self.name}: held-out accuracy{where} over {result['test_episodes']} episodes (95% interval)"]
        width = max(6, *(len(k) for k in result["accuracy"]))
        for key, value in result["accuracy"].items():
            lines.append(f"  {key:>{width}}: {100 * value:.2f}% +- {100 * result['accuracy_ci95'][key]:.2f}")
        for key, why in result.get("settings_skipped", {}).items():
            lines.append(f"  {key:>{width}}: not tested ({why}; this dataset holds out {result['test_classes']})")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        return {f"accuracy_{k}": v for k, v in result["accuracy"].items()}
