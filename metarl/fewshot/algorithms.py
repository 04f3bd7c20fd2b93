"""The few-shot :class:`~metarl.training.MetaAlgorithm` classes: the learners of :mod:`metarl.fewshot.learners`
plugged into the shared outer loop :func:`metarl.training.run_meta_training`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.data import EpisodeBatch, EpisodicSampler, mean_and_ci95
from metarl.fewshot.learners import (INSTANCES_REPORTED, METATEST_SETTINGS, SINUSOID_STEPS_REPORTED,
                                     SINUSOID_TEST_SHOTS, GradientLearner, build_classifier, build_regressor,
                                     classifier_query_logits)
from metarl.fewshot.networks import MANN, LSTMBaseline
from metarl.fewshot.omniglot import LabelledImages, random_affine
from metarl.fewshot.text import LabelledTexts, TokenisedTexts, text_encoder_of
from metarl.fewshot.sinusoid import SinusoidTasks
from metarl.algorithm import MetaAlgorithm
from metarl.errors import check_finite, check_validation_seed

__all__ = ["SinusoidMetaLearning", "FewShotClassification", "MANNMetaLearning"]


# --------------------------------------------------------------------------------------------
# meta-algorithms (plugged into metarl.training.run_meta_training)


class OuterAdam:
    """Adam on a module's trainable parameters, and lazy Adam (``torch.optim.SparseAdam``) on those of its sparse
    embedding tables: WordLlama's 32k-row table gets a sparse gradient (the rows of an episode's tokens), and only
    those rows and their moments change, instead of a dense step over the whole table (6x faster per iteration,
    the same accuracy; docs/benchmarks.md, text encoders).

    Args:
        module: the module whose ``requires_grad`` parameters train.
        lr: the learning rate of both.
    """

    def __init__(self, module: nn.Module, lr: float):
        sparse_ids = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse}
        trainable = [p for p in module.parameters() if p.requires_grad]
        dense = [p for p in trainable if id(p) not in sparse_ids] or [torch.zeros(1, requires_grad=True)]
        sparse = [p for p in trainable if id(p) in sparse_ids]
        self.optimizers = [torch.optim.Adam(dense, lr=lr)] + ([torch.optim.SparseAdam(sparse, lr=lr)] if sparse else [])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The dense Adam's state (a plain Adam state dict, as checkpoints of image runs hold), and the sparse
        one's under ``"sparse"`` where there is one."""
        state = self.optimizers[0].state_dict()
        return {**state, "sparse": self.optimizers[1].state_dict()} if len(self.optimizers) > 1 else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        sparse = state.pop("sparse", None)
        if (sparse is None) != (len(self.optimizers) == 1):
            raise ValueError("the checkpoint's optimizer state does not match this learner's sparse parameters")
        self.optimizers[0].load_state_dict(state)
        if sparse is not None:
            self.optimizers[1].load_state_dict(sparse)


def _grad_norm(params: list[torch.Tensor], max_norm: float = 0.0) -> torch.Tensor:
    """The global norm of the parameters' gradients (dense or sparse), scaled down to ``max_norm`` when above it
    (``max_norm > 0``)."""
    norm = torch.linalg.vector_norm(torch.stack(
        [(p.grad.coalesce().values() if p.grad.is_sparse else p.grad).norm() for p in params]))
    if max_norm > 0 and bool(norm > max_norm):
        for p in params:
            p.grad.mul_(max_norm / (float(norm) + 1e-6))
    return norm


class _TrainedModule(MetaAlgorithm):
    """State handling shared by the few-shot algorithms: one module trained by Adam (:class:`OuterAdam`)."""

    module: nn.Module
    optimizer: OuterAdam

    config_class = FewShotConfig

    def __init__(self, settings: FewShotConfig, algo: str):
        self.settings = self.cfg = settings
        self.name = algo

    def _step(self, loss: torch.Tensor) -> None:
        check_finite(loss, "the meta-training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = _grad_norm([p for p in self.module.parameters() if p.grad is not None], self.settings.grad_clip)
        check_finite(norm, "the meta-gradient")
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class SinusoidMetaLearning(_TrainedModule):
    """MAML / first-order MAML / Meta-SGD on sinusoid regression (MAML paper, section 5.1).

    Validation (``eval_every``, through the shared outer loop): the negated mean 5-shot MSE over 1 to
    ``metatest_steps`` inner steps on ``eval_tasks`` sinusoids of ``eval_seed``; the best state goes to
    ``best.pt`` and is meta-tested into ``metatest_best.json``. This matters because MAML's initialisation,
    tuned for one step of size 0.01, can sit past the stability edge of gradient descent for some 5-point
    tasks; iterates where repeated steps blow up on a few tasks come and go during training.

    Meta-test: ``metatest_tasks`` held-out sinusoids, each adapted on 5 support points; the MSE on
    ``metatest_queries`` query points after 0-10 inner steps, with 95% intervals over tasks.
    """

    metatest_only_settings = ("metatest_tasks", "metatest_chunk")  # validation reads the steps and queries

    def __init__(self, settings: FewShotConfig, algo: str):
        super().__init__(settings, algo)
        self.tasks = SinusoidTasks()
        self.module = build_regressor(settings, algo, torch.Generator().manual_seed(settings.seed))
        self.optimizer = OuterAdam(self.module, settings.outer_lr)

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        batch = self.tasks.sample(rng, s.meta_batch_size, s.shots, s.queries)
        loss, _ = self.module.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                         batch.query_labels, steps=s.inner_steps, multi_step=s.multi_step_loss)
        self._step(loss)
        return {"train/query_mse": loss.item(), "samples": s.meta_batch_size * (s.shots + s.queries)}

    def validation_scores(self, n_tasks: int, seed: int) -> dict[str, float]:
        """``score``: minus the mean 5-shot MSE over steps 1..``metatest_steps`` on ``n_tasks`` sinusoids of
        ``seed`` (``-inf`` where some task's adaptation diverged), and the MSE after 1, 5 and 10 steps."""
        s = self.settings
        check_validation_seed(seed, s.metatest_seed)
        batch = self.tasks.sample(np.random.default_rng(seed), n_tasks, SINUSOID_TEST_SHOTS, s.metatest_queries)
        mse = [float(m.mean()) for m in self.mse_by_step(self.module, batch, max(1, s.metatest_steps))]
        score = float(np.mean(mse[1:]))
        out = {f"mse_step{k}": mse[k] for k in SINUSOID_STEPS_REPORTED if k < len(mse) and np.isfinite(mse[k])}
        out["diverged"] = float(not np.isfinite(score))
        return {"score": -score if np.isfinite(score) else float("-inf"), **out}

    @staticmethod
    def mse_by_step(learner: GradientLearner, batch: EpisodeBatch, steps: int) -> list[torch.Tensor]:
        """Per-task query MSE ``(tasks,)`` after 0, 1, ..., ``steps`` inner steps on the support points."""
        tasks = batch.support_inputs.shape[0]
        with torch.no_grad():
            params = {k: v.expand(tasks, *v.shape) for k, v in learner.initial_parameters().items()}
            mse = []
            for step in range(steps + 1):
                if step > 0:
                    params = learner.further_step(params, batch.support_inputs, batch.support_labels)
                errors = (vmap(learner.predict)(params, batch.query_inputs) - batch.query_labels).pow(2)
                mse.append(errors.mean(dim=(1, 2)))
        return mse

    def meta_test(self) -> dict[str, Any]:
        s = self.settings
        batch = self.tasks.sample(np.random.default_rng(s.metatest_seed), s.metatest_tasks, SINUSOID_TEST_SHOTS,
                                  s.metatest_queries)
        steps = max(s.metatest_steps, max(SINUSOID_STEPS_REPORTED))
        stats = [mean_and_ci95(m) for m in self.mse_by_step(self.module, batch, steps)]
        # a step count at which some task's adaptation blew up is reported as null (strict JSON has no inf/nan)
        return {
            "mse_by_step": {str(k): _finite_or_none(stats[k][0]) for k in range(steps + 1)},
            "mse_by_step_ci95": {str(k): _finite_or_none(stats[k][1]) for k in range(steps + 1)},
            "test_tasks": s.metatest_tasks,
            "test_shots": SINUSOID_TEST_SHOTS,
            "test_queries": s.metatest_queries,
        }

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        lines = [f"{self.name}: {result['test_shots']}-shot MSE over {result['test_tasks']} tasks (95% interval)"]
        for step, value in result["mse_by_step"].items():
            shown = "diverged on some tasks" if value is None else f"{value:.4f} +- {result['mse_by_step_ci95'][step]:.4f}"
            lines.append(f"  after {int(step):2d} steps: {shown}")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        return {f"mse_step{k}": result["mse_by_step"][str(k)] for k in SINUSOID_STEPS_REPORTED
                if result["mse_by_step"][str(k)] is not None}


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


class FewShotClassification(_TrainedModule):
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
                   "train/query_accuracy": float(_accuracy(logits, batch.query_labels).mean()),
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
                accuracies.append(_accuracy(logits, batch.query_labels))
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


class _SequenceModels(nn.Module):
    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.models = nn.ModuleDict(models)


class MANNMetaLearning(_TrainedModule):
    """MANN (Santoro et al. 2016) and a plain LSTM baseline, trained side by side on the same episodes.

    An episode shows ``shots`` instances of each of ``ways`` classes in random order; at every
    step the network sees the image and the previous step's label and must predict the current
    label. The meta-test reports accuracy at the 1st, 2nd, 5th and 10th presentation of a class.
    """

    metatest_only_settings = ("metatest_tasks", "metatest_chunk")

    def __init__(self, settings: FewShotConfig, algo: str, train: LabelledImages, test: LabelledImages):
        super().__init__(settings, algo)
        if settings.shots < max(INSTANCES_REPORTED):
            raise ValueError(f"MANN episodes need at least {max(INSTANCES_REPORTED)} instances per class "
                             f"(--shots) to report the 10th-presentation accuracy, got {settings.shots}")
        self.train_data, self.test_data = train, test
        self.sampler = EpisodicSampler(train.labels, ways=settings.ways, shots=settings.shots, queries=0)
        EpisodicSampler(test.labels, ways=settings.ways, shots=settings.shots, queries=0)  # fail early if too small
        generator = torch.Generator().manual_seed(settings.seed)
        size = settings.image_size ** 2
        models: dict[str, nn.Module] = {
            "mann": MANN(size, settings.ways, settings.controller_size, settings.memory_slots, settings.memory_width,
                         settings.read_heads, generator=generator)}
        if settings.lstm_baseline:
            models["lstm"] = LSTMBaseline(size, settings.ways, settings.controller_size, generator=generator)
        self.module = _SequenceModels(models)
        self.optimizer = OuterAdam(self.module, settings.outer_lr)

    def sequences(self, data: LabelledImages, sampler: EpisodicSampler, rng: np.random.Generator, count: int,
                  augment: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` episodes as (inputs, previous-label one-hots, labels, presentation number)."""
        ways, steps = self.settings.ways, self.settings.ways * self.settings.shots
        indices, labels = [], []
        for _ in range(count):
            episode = sampler.sample(rng)
            order = rng.permutation(steps)
            indices.append(episode.support_indices[order])
            labels.append(episode.support_labels[order])
        index = torch.from_numpy(np.stack(indices))
        label = torch.from_numpy(np.stack(labels))
        images = data.images[index]
        inputs = (random_affine(images, rng) if augment else images).flatten(2)
        previous = torch.zeros(count, steps, ways)
        previous[:, 1:] = F.one_hot(label[:, :-1], ways).float()
        presentation = (F.one_hot(label, ways).cumsum(1) * F.one_hot(label, ways)).sum(-1)
        return inputs, previous, label, presentation

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        inputs, previous, labels, _ = self.sequences(self.train_data, self.sampler, rng, s.meta_batch_size,
                                                     augment=s.augment)
        metrics: dict[str, float] = {"samples": labels.numel()}
        total = 0.0
        for name, model in self.module.models.items():
            logits = model(inputs, previous)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
            total = total + loss
            metrics[f"train/{name}_loss"] = loss.item()
            metrics[f"train/{name}_accuracy"] = float((logits.argmax(-1) == labels).float().mean())
        self._step(total)
        return metrics

    def per_instance_accuracy(self, model: nn.Module, episodes: int, seed: int) -> dict[int, np.ndarray]:
        """Per-episode accuracy at each presentation number 1..shots on held-out episodes."""
        s = self.settings
        rng = np.random.default_rng(seed)
        sampler = EpisodicSampler(self.test_data.labels, ways=s.ways, shots=s.shots, queries=0)
        out: dict[int, list[np.ndarray]] = {k: [] for k in range(1, s.shots + 1)}
        with torch.no_grad():
            for start in range(0, episodes, s.metatest_chunk):
                inputs, previous, labels, presentation = self.sequences(
                    self.test_data, sampler, rng, min(s.metatest_chunk, episodes - start))
                correct = (model(inputs, previous).argmax(-1) == labels).float()
                for k in out:
                    mask = (presentation == k).float()
                    out[k].append(((correct * mask).sum(1) / mask.sum(1)).numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def meta_test(self) -> dict[str, Any]:
        s = self.settings
        result: dict[str, Any] = {"test_episodes": s.metatest_tasks, "ways": s.ways, "instances_per_class": s.shots}
        for name, model in self.module.models.items():
            per_instance = self.per_instance_accuracy(model, s.metatest_tasks, s.metatest_seed)
            stats = {k: mean_and_ci95(v) for k, v in per_instance.items()}
            entry = {"per_instance_accuracy": {str(k): stats[k][0] for k in stats},
                     "per_instance_accuracy_ci95": {str(k): stats[k][1] for k in stats}}
            if name == "mann":
                result.update(entry)
            else:
                result[f"{name}_baseline"] = entry
        return result

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        rows = [("MANN", result)]
        if "lstm_baseline" in result:
            rows.append(("LSTM", result["lstm_baseline"]))
        header = "  ".join(f"{'instance ' + str(k):>18}" for k in INSTANCES_REPORTED)
        lines = [f"{self.name}: {result['ways']}-class episodes, {result['test_episodes']} held-out episodes "
                 "(accuracy % +- 95% interval)", f"{'':6}{header}"]
        for label, entry in rows:
            acc, ci = entry["per_instance_accuracy"], entry["per_instance_accuracy_ci95"]
            cells = "  ".join(f"{100 * acc[str(k)]:>10.2f} +- {100 * ci[str(k)]:4.2f}" for k in INSTANCES_REPORTED)
            lines.append(f"{label:6}{cells}")
        return "\n".join(lines)

    def metatest_scalars(self, result: Mapping[str, Any]) -> dict[str, float]:
        out = {f"mann_instance{k}": result["per_instance_accuracy"][str(k)] for k in INSTANCES_REPORTED}
        if "lstm_baseline" in result:
            out.update({f"lstm_instance{k}": result["lstm_baseline"]["per_instance_accuracy"][str(k)]
                        for k in INSTANCES_REPORTED})
        return out
