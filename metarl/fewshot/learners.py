"""Few-shot learners: what each one does with a task's support set, and how it is meta-trained.

| learner | adaptation on the support set |
| --- | --- |
| :class:`GradientLearner` (MAML, first-order MAML, Meta-SGD) | gradient steps through :mod:`metarl.adaptation` |
| :class:`PrototypicalNetwork` | class prototypes = mean support embeddings |
| :class:`~metarl.fewshot.networks.MANN` | the episode written into external memory |

The gradient learners never run their own inner loop: they hand a pure loss function to
:func:`metarl.adaptation.adapt_batch` (vmapped over the tasks of a meta-batch), the same core the
RL agents call. The :class:`~metarl.training.MetaAlgorithm` classes at the bottom plug the
learners into the shared outer loop :func:`metarl.training.run_meta_training`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from metarl.adaptation import (
    MetaSGDStepSizes,
    Params,
    StepSize,
    adapt,
    adapt_batch,
    functional_forward,
    parameters_of,
)
from metarl.fewshot.data import EpisodeBatch, EpisodicSampler, mean_and_ci95
from metarl.fewshot.networks import MANN, Conv4, ConvClassifier, LSTMBaseline, init_parameters_, sinusoid_mlp
from metarl.fewshot.omniglot import LabelledImages, random_affine
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.sinusoid import SinusoidTasks
from metarl.training import MetaAlgorithm, check_finite, check_validation_seed

__all__ = [
    "GradientLearner",
    "PrototypicalNetwork",
    "build_classifier",
    "build_regressor",
    "classifier_query_logits",
    "SinusoidMetaLearning",
    "FewShotClassification",
    "MANNMetaLearning",
    "METATEST_SETTINGS",
    "INSTANCES_REPORTED",
]

#: (ways, shots) of the Omniglot meta-test, keyed as in ``metatest.json``
METATEST_SETTINGS: dict[str, tuple[int, int]] = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1)}
#: presentations of a class at which MANN's per-instance accuracy is reported
INSTANCES_REPORTED = (1, 2, 5, 10)
#: sinusoid meta-test: support points per task and inner steps at which the MSE is reported
SINUSOID_TEST_SHOTS = 5
SINUSOID_STEPS_REPORTED = (1, 5, 10)


# --------------------------------------------------------------------------------------------
# learners


class GradientLearner(nn.Module):
    """MAML, first-order MAML or Meta-SGD around a network called with explicit parameters.

    Args:
        net: the network; for classification a :class:`ConvClassifier` (its output layer is
            expanded to the task's number of classes before adapting).
        method: ``"maml"`` (second-order), ``"fomaml"`` (first-order) or ``"metasgd"`` (learned
            per-parameter step sizes, second-order).
        inner_lr: inner step size (Meta-SGD: the initial value of every learned step size).
        task: ``"regression"`` (mean squared error) or ``"classification"`` (cross-entropy).
    """

    def __init__(self, net: nn.Module, method: str, inner_lr: float, task: str):
        super().__init__()
        if method not in ("maml", "fomaml", "metasgd"):
            raise ValueError(f"unknown gradient-based method {method!r}; choose maml, fomaml or metasgd")
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        self.net, self.method, self.inner_lr, self.task = net, method, float(inner_lr), task
        self.step_sizes = MetaSGDStepSizes(parameters_of(net), init=inner_lr) if method == "metasgd" else None

    @property
    def first_order(self) -> bool:
        return self.method == "fomaml"

    def step_size(self) -> StepSize:
        """The inner step size handed to the core (a dict of learned tensors for Meta-SGD)."""
        return self.step_sizes.as_dict() if self.step_sizes is not None else self.inner_lr

    def initial_parameters(self, ways: int | None = None) -> Params:
        """The meta-parameters, with a classifier's output layer expanded to ``ways`` rows."""
        params = parameters_of(self.net)
        if self.task == "classification":
            if ways is None:
                raise ValueError("a classifier needs the number of classes (ways) of the task")
            params = self.net.task_parameters(params, ways)
        return params

    def predict(self, params: Params, inputs: torch.Tensor) -> torch.Tensor:
        """Network output (logits or regression values) with ``params``."""
        return functional_forward(self.net, params, inputs)

    def loss(self, params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The task loss: a pure function of (parameters, (inputs, targets)), as the core requires."""
        inputs, targets = batch
        out = self.predict(params, inputs)
        if self.task == "regression":
            return (out - targets).pow(2).mean()
        return F.cross_entropy(out, targets)

    def adapt_tasks(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, *, steps: int,
                    ways: int | None = None, first_order: bool | None = None) -> Params:
        """Adapted parameters for a stack of tasks (leading task axis), via the shared core."""
        return adapt_batch(
            self.loss, self.initial_parameters(ways), (support_inputs, support_targets), steps=steps,
            step_size=self.step_size(), first_order=self.first_order if first_order is None else first_order,
        )

    def adapt_tasks_each_step(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, *, steps: int,
                              ways: int | None = None) -> list[Params]:
        """The adapted parameters of a stack of tasks after each of ``steps`` inner steps (differentiable)."""
        params, batched, states = self.initial_parameters(ways), False, []
        for _ in range(steps):
            params = adapt_batch(self.loss, params, (support_inputs, support_targets), steps=1,
                                 step_size=self.step_size(), first_order=self.first_order, batched_params=batched)
            states.append(params)
            batched = True
        return states

    def query_loss(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, query_inputs: torch.Tensor,
                   query_targets: torch.Tensor, *, steps: int, multi_step: bool, ways: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query loss over tasks after ``steps`` inner steps, and the query outputs after the last step.

        With ``multi_step`` the loss is the mean over the states after each step (MAML++'s multi-step loss,
        Antoniou et al. 2019): every step count is trained, not only the last.
        """
        if multi_step:
            states = self.adapt_tasks_each_step(support_inputs, support_targets, steps=steps, ways=ways)
        else:
            states = [self.adapt_tasks(support_inputs, support_targets, steps=steps, ways=ways)]
        losses = [vmap(self.loss)(state, (query_inputs, query_targets)).mean() for state in states]
        return torch.stack(losses).mean(), vmap(self.predict)(states[-1], query_inputs)

    def adapt_one(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, *, steps: int,
                  ways: int | None = None) -> Params:
        """Adapted parameters for one task (no task axis)."""
        return adapt(self.loss, self.initial_parameters(ways), (support_inputs, support_targets), steps=steps,
                     step_size=self.step_size(), first_order=self.first_order)

    def further_step(self, params: Params, support_inputs: torch.Tensor, support_targets: torch.Tensor) -> Params:
        """One more inner step from already adapted, task-batched ``params`` (for step-by-step evaluation)."""
        step_size = self.step_size()
        return vmap(lambda p, x, y: adapt(self.loss, p, (x, y), steps=1, step_size=step_size, first_order=True))(
            params, support_inputs, support_targets)


class PrototypicalNetwork(nn.Module):
    """Prototypical networks (Snell et al., NeurIPS 2017) on the Conv-4 embedding.

    Adaptation is the class prototypes: the mean embedding of each class's support examples;
    a query is classified by softmax over negative squared Euclidean distances to them. Batch
    norm keeps running statistics, so in eval mode an image's embedding does not depend on the
    other images of its batch.
    """

    def __init__(self, image_size: int = 28, in_channels: int = 1, hidden: int = 64,
                 generator: torch.Generator | None = None, downsample: str = "stride"):
        super().__init__()
        self.encoder = Conv4(in_channels, hidden, running_stats=True, downsample=downsample)
        self.encoder.feature_size(image_size)  # a clear error now if the images are too small for the blocks
        self.image_size = image_size
        if generator is not None:
            init_parameters_(self.encoder, generator)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of images with any leading axes: ``(..., C, H, W) -> (..., features)``."""
        lead = images.shape[:-3]
        return self.encoder(images.reshape(-1, *images.shape[-3:])).reshape(*lead, -1)

    @staticmethod
    def prototypes(support_embeddings: torch.Tensor, support_labels: torch.Tensor, ways: int) -> torch.Tensor:
        """Per-class mean of ``(..., n, features)`` embeddings -> ``(..., ways, features)``."""
        one_hot = F.one_hot(support_labels, ways).to(support_embeddings.dtype)
        counts = one_hot.sum(-2).unsqueeze(-1)
        if bool((counts == 0).any()):
            raise ValueError(f"every one of the {ways} classes needs at least one support example")
        return one_hot.transpose(-1, -2) @ support_embeddings / counts

    @staticmethod
    def logits_from(prototypes: torch.Tensor, query_embeddings: torch.Tensor) -> torch.Tensor:
        """Negative squared Euclidean distances ``(..., q, ways)``."""
        return -(query_embeddings.unsqueeze(-2) - prototypes.unsqueeze(-3)).pow(2).sum(-1)

    def episode_logits(self, batch: EpisodeBatch, ways: int) -> torch.Tensor:
        """Query logits of stacked episodes; support and query are embedded in one pass."""
        n_support = batch.support_inputs.shape[-4]
        embeddings = self.embed(torch.cat([batch.support_inputs, batch.query_inputs], dim=-4))
        prototypes = self.prototypes(embeddings[..., :n_support, :], batch.support_labels, ways)
        return self.logits_from(prototypes, embeddings[..., n_support:, :])


def build_classifier(settings: FewShotConfig, algo: str, generator: torch.Generator | None = None) -> nn.Module:
    """The classifier of learner ``algo`` with a run's settings (a :class:`GradientLearner` or
    :class:`PrototypicalNetwork`)."""
    if algo == "protonet":
        return PrototypicalNetwork(settings.image_size, hidden=settings.hidden, generator=generator,
                                   downsample=settings.downsample)
    if algo in ("maml", "fomaml", "metasgd"):
        net = ConvClassifier(settings.image_size, hidden=settings.hidden, generator=generator,
                             downsample=settings.downsample)
        return GradientLearner(net, algo, settings.inner_lr, task="classification")
    raise ValueError(f"{algo!r} is not an episodic classifier (choose maml, fomaml, metasgd or protonet)")


def build_regressor(settings: FewShotConfig, algo: str, generator: torch.Generator | None = None) -> GradientLearner:
    """The sinusoid regressor (1-40-40-1 MLP) of learner ``algo`` with a run's settings."""
    return GradientLearner(sinusoid_mlp(generator=generator), algo, settings.inner_lr, task="regression")


def classifier_query_logits(learner: nn.Module, batch: EpisodeBatch, ways: int, *, steps: int,
                            first_order: bool | None = None) -> torch.Tensor:
    """Query logits ``(tasks, queries, ways)`` of stacked episodes after adapting on their support sets."""
    if isinstance(learner, PrototypicalNetwork):
        return learner.episode_logits(batch, ways)
    adapted = learner.adapt_tasks(batch.support_inputs, batch.support_labels, steps=steps, ways=ways,
                                  first_order=first_order)
    return vmap(learner.predict)(adapted, batch.query_inputs)


# --------------------------------------------------------------------------------------------
# meta-algorithms (plugged into metarl.training.run_meta_training)


class _TrainedModule(MetaAlgorithm):
    """State handling shared by the few-shot algorithms: one module trained by Adam."""

    module: nn.Module
    optimizer: torch.optim.Optimizer

    config_class = FewShotConfig

    def __init__(self, settings: FewShotConfig, algo: str):
        self.settings = self.cfg = settings
        self.name = algo

    def _step(self, loss: torch.Tensor) -> None:
        check_finite(loss, "the meta-training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.module.parameters() if p.grad is not None]
        if self.settings.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
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
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=settings.outer_lr)

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


class FewShotClassification(_TrainedModule):
    """Episodic meta-training of MAML / first-order MAML / Meta-SGD / ProtoNets on Omniglot.

    Args:
        settings: the run's settings.
        train: meta-training classes (e.g. the background alphabets with rotations).
        test: held-out classes for the meta-test (e.g. held-out alphabets, no rotations).
        seed: seeds the initial weights.
    """

    metatest_only_settings = ("metatest_steps", "metatest_tasks", "metatest_queries", "metatest_chunk")

    def __init__(self, settings: FewShotConfig, algo: str, train: LabelledImages, test: LabelledImages):
        super().__init__(settings, algo)
        self.train_data, self.test_data = train, test
        self.sampler = EpisodicSampler(train.labels, ways=settings.ways, shots=settings.shots, queries=settings.queries)
        # test samplers are built now so that a too-small held-out split fails before training, not after
        self.test_samplers = {key: EpisodicSampler(test.labels, ways=w, shots=k, queries=settings.metatest_queries)
                              for key, (w, k) in METATEST_SETTINGS.items()}
        self.module = build_classifier(settings, algo, torch.Generator().manual_seed(settings.seed))
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=settings.outer_lr)

    def meta_train_step(self, rng: np.random.Generator) -> dict[str, float]:
        s = self.settings
        self.module.train()
        batch = self.sampler.sample_batch(self.train_data.images, rng, s.meta_batch_size)
        if s.augment:
            batch = batch._replace(support_inputs=random_affine(batch.support_inputs, rng),
                                   query_inputs=random_affine(batch.query_inputs, rng))
        if s.multi_step_loss and isinstance(self.module, GradientLearner):
            loss, logits = self.module.query_loss(batch.support_inputs, batch.support_labels, batch.query_inputs,
                                                  batch.query_labels, steps=s.inner_steps, multi_step=True, ways=s.ways)
        else:
            logits = classifier_query_logits(self.module, batch, s.ways, steps=s.inner_steps)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.query_labels.flatten())
        self._step(loss)
        images = s.meta_batch_size * s.ways * (s.shots + s.queries)
        return {"train/query_loss": loss.item(), "train/query_accuracy": float(_accuracy(logits, batch.query_labels).mean()),
                "samples": images}

    def evaluate(self, ways: int, shots: int, episodes: int, rng: np.random.Generator) -> np.ndarray:
        """Per-episode query accuracy on ``episodes`` held-out ``ways``-way ``shots``-shot episodes."""
        sampler = EpisodicSampler(self.test_data.labels, ways=ways, shots=shots, queries=self.settings.metatest_queries)
        self.module.eval()
        accuracies = []
        chunk = self.settings.metatest_chunk
        with torch.no_grad():
            for start in range(0, episodes, chunk):
                batch = sampler.sample_batch(self.test_data.images, rng, min(chunk, episodes - start))
                logits = classifier_query_logits(self.module, batch, ways, steps=self.settings.metatest_steps,
                                                 first_order=True)
                accuracies.append(_accuracy(logits, batch.query_labels))
        self.module.train()
        return torch.cat(accuracies).numpy()

    def meta_test(self) -> dict[str, Any]:
        s = self.settings
        accuracy, interval = {}, {}
        for i, (key, (ways, shots)) in enumerate(METATEST_SETTINGS.items()):
            rng = np.random.default_rng([s.metatest_seed, i])
            accuracy[key], interval[key] = mean_and_ci95(self.evaluate(ways, shots, s.metatest_tasks, rng))
        return {"accuracy": accuracy, "accuracy_ci95": interval, "test_episodes": s.metatest_tasks,
                "test_queries_per_class": s.metatest_queries, "test_classes": self.test_data.num_classes}

    def format_metatest(self, result: Mapping[str, Any]) -> str:
        lines = [f"{self.name}: held-out accuracy over {result['test_episodes']} episodes (95% interval)"]
        for key, value in result["accuracy"].items():
            lines.append(f"  {key:>6}: {100 * value:.2f}% +- {100 * result['accuracy_ci95'][key]:.2f}")
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
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=settings.outer_lr)

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
