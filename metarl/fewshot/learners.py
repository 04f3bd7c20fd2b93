"""Few-shot learners: what each one does with a task's support set.

| learner | adaptation on the support set |
| --- | --- |
| :class:`GradientLearner` (MAML, first-order MAML, Meta-SGD) | gradient steps through :mod:`metarl.adaptation` |
| :class:`PrototypicalNetwork` | class prototypes = mean support embeddings |
| :class:`~metarl.fewshot.networks.MANN` | the episode written into external memory |

The gradient learners never run their own inner loop: they hand a pure loss function to
:func:`metarl.adaptation.adapt_batch` (vmapped over the tasks of a meta-batch), the same core the
RL agents call; a regression MLP's loss gives the core every task's gradient in closed form
(:mod:`metarl.mlp_gradients`, the same numbers with half the operator calls).
:mod:`metarl.fewshot.algorithms` plugs the learners into the shared outer loop
:func:`metarl.training.run_meta_training`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metarl.adaptation import (
    MetaSGDStepSizes,
    Params,
    StepSize,
    adapt,
    adapt_batch,
    functional_forward,
    inner_loop,
    map_tasks,
    parameters_of,
)
from metarl.fewshot.data import EpisodeBatch
from metarl.mlp_gradients import MLPRegressionLoss, mlp_layout
from metarl.fewshot.networks import Conv4, ConvClassifier, init_parameters_, sinusoid_mlp
from metarl.fewshot.config import FewShotConfig

__all__ = [
    "GradientLearner",
    "PrototypicalNetwork",
    "build_classifier",
    "build_regressor",
    "classifier_query_logits",
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
        self._has_conv = any(isinstance(m, nn.Conv2d) for m in net.modules())
        # a regression MLP adapting all its parameters hands the core a loss with closed-form task gradients
        # (same numbers, half the operator calls: metarl.mlp_gradients); everything else the generic loss
        layout = mlp_layout(net) if task == "regression" and getattr(net, "inner_parameter_names", None) is None \
            else None
        self._mlp = MLPRegressionLoss(layout) if layout is not None else None
        self.step_sizes = MetaSGDStepSizes(self._inner(parameters_of(net)), init=inner_lr) if method == "metasgd" \
            else None

    def _inner(self, params: Params) -> Params:
        """The parameters the inner loop adapts: all, or those the net names (``inner_parameter_names``, e.g. a
        sentence classifier's head; its encoder then trains in the outer loop only)."""
        names = getattr(self.net, "inner_parameter_names", None)
        return params if names is None else {k: v for k, v in params.items() if k in names}

    @property
    def vectorize(self) -> bool:
        """Whether a meta-batch's tasks run in one ``vmap`` (else a loop over tasks, the same numbers). Convolutions
        with per-task weights under ``vmap`` become grouped convolutions, 2.4x slower than a loop on the CPU for
        Conv-4 (``scripts/benchmark.py maml-omniglot``): conv nets loop on the CPU; everything else vectorises."""
        return not (self._has_conv and next(self.net.parameters()).device.type == "cpu")

    def per_task(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn`` applied to each task's slice of ``args`` (pytrees with a leading task axis), stacked: one
        ``vmap`` or a loop (:attr:`vectorize`)."""
        return map_tasks(fn, *args, vectorize=self.vectorize)

    @property
    def first_order(self) -> bool:
        return self.method == "fomaml"

    def step_size(self) -> StepSize:
        """The inner step size handed to the core (a dict of learned tensors for Meta-SGD)."""
        return self.step_sizes.as_dict() if self.step_sizes is not None else self.inner_lr

    def initial_parameters(self, ways: int | None = None) -> Params:
        """The meta-parameters, with a classifier's output layer expanded to ``ways`` rows."""
        params = self._inner(parameters_of(self.net))
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
        return self.loss_of(self.predict(params, inputs), targets)

    def loss_of(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The task loss of network outputs: mean squared error (regression) or cross-entropy."""
        if self.task == "regression":
            return (outputs - targets).pow(2).mean()
        return F.cross_entropy(outputs, targets)

    def adapt_tasks(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, *, steps: int,
                    ways: int | None = None, first_order: bool | None = None) -> Params:
        """Adapted parameters for a stack of tasks (leading task axis), via the shared core."""
        return adapt_batch(
            self.loss, self.initial_parameters(ways), (support_inputs, support_targets), steps=steps,
            step_size=self.step_size(), first_order=self.first_order if first_order is None else first_order,
            vectorize=self.vectorize,
        )

    def query_loss(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, query_inputs: torch.Tensor,
                   query_targets: torch.Tensor, *, steps: int, multi_step: bool, ways: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean query loss over tasks after ``steps`` inner steps, and the query outputs after the last step.

        With ``multi_step`` the loss is the mean over the states after each step (MAML++'s multi-step loss,
        Antoniou et al. 2019): every step count is trained, not only the last. Each task's adaptation, query
        outputs and losses run in one :meth:`per_task` call (one ``vmap``, a forward per query set).
        """
        start, step_size, first_order = self.initial_parameters(ways), self.step_size(), self.first_order
        if self._mlp is not None and support_inputs.dim() == 3:  # all tasks per call, no vmap
            losses, outputs = [], None

            def query_mse(step: int, params: Params) -> None:
                nonlocal outputs
                if multi_step or step == steps - 1:
                    outputs = self._mlp.outputs(params, query_inputs)
                    losses.append((outputs - query_targets).pow(2).mean())  # every task has as many points

            inner_loop(self._mlp, start, (support_inputs, support_targets), steps=steps, step_size=step_size,
                       first_order=first_order, task_axis=True, on_step=query_mse)
            return (losses[0] if len(losses) == 1 else torch.stack(losses).mean()), outputs

        def one(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
            losses, outputs = [], None

            def query_loss(step: int, params: Params) -> None:
                nonlocal outputs
                if multi_step or step == steps - 1:
                    outputs = self.predict(params, xq)
                    losses.append(self.loss_of(outputs, yq))

            inner_loop(self.loss, start, (xs, ys), steps=steps, step_size=step_size, first_order=first_order,
                       on_step=query_loss)
            return torch.stack(losses).mean(), outputs

        losses, outputs = self.per_task(one, support_inputs, support_targets, query_inputs, query_targets)
        return losses.mean(), outputs

    def adapted_outputs(self, support_inputs: torch.Tensor, support_targets: torch.Tensor,
                        query_inputs: torch.Tensor, *, steps: int, ways: int | None = None,
                        first_order: bool | None = None) -> torch.Tensor:
        """Query outputs of stacked tasks after ``steps`` inner steps on their support sets (one
        :meth:`per_task` call for the adaptation and the outputs)."""
        start, step_size = self.initial_parameters(ways), self.step_size()
        first_order = self.first_order if first_order is None else first_order
        if self._mlp is not None and support_inputs.dim() == 3:  # all tasks per call, no vmap
            params = adapt_batch(self._mlp, start, (support_inputs, support_targets), steps=steps,
                                 step_size=step_size, first_order=first_order)
            return self._mlp.outputs(params, query_inputs)

        def one(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
            params = adapt(self.loss, start, (xs, ys), steps=steps, step_size=step_size, first_order=first_order)
            return self.predict(params, xq)

        return self.per_task(one, support_inputs, support_targets, query_inputs)

    def adapt_one(self, support_inputs: torch.Tensor, support_targets: torch.Tensor, *, steps: int,
                  ways: int | None = None) -> Params:
        """Adapted parameters for one task (no task axis)."""
        return adapt(self.loss, self.initial_parameters(ways), (support_inputs, support_targets), steps=steps,
                     step_size=self.step_size(), first_order=self.first_order)

    def further_step(self, params: Params, support_inputs: torch.Tensor, support_targets: torch.Tensor) -> Params:
        """One more inner step from already adapted, task-batched ``params`` (for step-by-step evaluation)."""
        step_size = self.step_size()
        return self.per_task(lambda p, x, y: adapt(self.loss, p, (x, y), steps=1, step_size=step_size,
                                                   first_order=True), 
            params, support_inputs, support_targets)


class PrototypicalNetwork(nn.Module):
    """Prototypical networks (Snell et al., NeurIPS 2017) on the Conv-4 embedding.

    Adaptation is the class prototypes: the mean embedding of each class's support examples;
    a query is classified by softmax over negative squared Euclidean distances to them. Batch
    norm keeps running statistics, so in eval mode an image's embedding does not depend on the
    other images of its batch.
    """

    def __init__(self, image_size: int = 28, in_channels: int = 1, hidden: int = 64,
                 generator: torch.Generator | None = None, downsample: str = "stride",
                 encoder: nn.Module | None = None, metric_scale: float = 3.0):
        super().__init__()
        if encoder is not None:  # a sentence encoder on token ids (N, L): one input axis
            self.encoder, self.input_dims = encoder, 1
            # its unit vectors are at squared distance <= 4: a scale on the logits sets how sharp the training
            # softmax is (TADAM's metric scaling, Oreshkin et al. 2018, fixed here: learned, it grew and the table
            # overfit the training intents, docs/fewshot.md#text-few-shot-intent-classification); it never changes
            # a prediction
            self.register_buffer("metric_scale", torch.tensor(float(metric_scale)))
            return
        self.encoder = Conv4(in_channels, hidden, running_stats=True, downsample=downsample)
        self.encoder.feature_size(image_size)  # a clear error now if the images are too small for the blocks
        self.image_size, self.input_dims = image_size, 3
        if generator is not None:
            init_parameters_(self.encoder, generator)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Embeddings of inputs with any leading axes: ``(..., C, H, W)`` images or ``(..., L)`` token ids
        -> ``(..., features)``."""
        if self.input_dims == 1 and inputs.is_floating_point():
            return inputs  # sentence embeddings computed before (the meta-test embeds its sentences once)
        lead = inputs.shape[:-self.input_dims]
        return self.encoder(inputs.reshape(-1, *inputs.shape[-self.input_dims:])).reshape(*lead, -1)

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
        axis = -(self.input_dims + 1)
        n_support = batch.support_inputs.shape[axis]
        embeddings = self.embed(torch.cat([batch.support_inputs, batch.query_inputs], dim=axis))
        prototypes = self.prototypes(embeddings[..., :n_support, :], batch.support_labels, ways)
        logits = self.logits_from(prototypes, embeddings[..., n_support:, :])
        return logits * self.metric_scale if self.input_dims == 1 else logits


def build_classifier(settings: FewShotConfig, algo: str, generator: torch.Generator | None = None) -> nn.Module:
    """The classifier of learner ``algo`` with a run's settings (a :class:`GradientLearner` or
    :class:`PrototypicalNetwork`)."""
    if settings.kind == "text":
        from metarl.fewshot.text_encoders import SentenceClassifier, make_text_encoder

        encoder = make_text_encoder(settings.encoder, settings.max_length, settings.trainable_layers,
                                    settings.lora_rank)
        if algo == "protonet":
            return PrototypicalNetwork(encoder=encoder, metric_scale=settings.metric_scale)
        if algo in ("maml", "fomaml", "metasgd"):
            return GradientLearner(SentenceClassifier(encoder), algo, settings.inner_lr, task="classification")
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
    return learner.adapted_outputs(batch.support_inputs, batch.support_labels, batch.query_inputs, steps=steps,
                                   ways=ways, first_order=first_order)
