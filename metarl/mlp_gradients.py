"""Closed-form support gradients of small MLP regressors: back-propagation written as batched matrix products.

For an ``nn.Sequential`` of ``nn.Linear`` layers with ReLU or Tanh between them and the mean squared error,
the support-set gradient of every task of a meta-batch is a handful of batched matrix products. Writing them
out (:func:`mse_gradients`) gives the same gradients as ``torch.func.grad`` under ``vmap`` (to rounding), and
a MAML meta-gradient differentiates straight through them, with about half the operator calls: on the
sinusoid benchmark (``scripts/benchmark.py maml-sinusoid``, 25 tasks, a 1-40-40-1 network), where the time is
per-call overhead rather than arithmetic, a meta-iteration takes about half as long.

:class:`MLPRegressionLoss` is such a network's loss for the shared core: :func:`metarl.adaptation.adapt_batch`
steps every task with its closed-form gradients (the inner loop itself stays the core's).
:class:`~metarl.fewshot.learners.GradientLearner` uses it for regression MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metarl.adaptation import BatchedGradientLoss, Params

__all__ = ["MLPLayout", "MLPRegressionLoss", "mlp_layout", "mlp_forward", "mse_gradients"]

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh"}


@dataclass(frozen=True)
class MLPLayout:
    """The layers of a plain MLP: ``("linear", weight name, bias name)``, ``("relu",)`` or ``("tanh",)``."""

    layers: tuple[tuple[str, ...], ...]


def mlp_layout(net: nn.Module) -> MLPLayout | None:
    """The layout of ``net`` if it is an ``nn.Sequential`` of biased ``nn.Linear`` layers and ReLU/Tanh
    activations starting and ending with a linear layer, else ``None`` (use the generic core)."""
    if not isinstance(net, nn.Sequential) or len(net) == 0:
        return None
    layers: list[tuple[str, ...]] = []
    for name, module in net.named_children():
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append(("linear", f"{name}.weight", f"{name}.bias"))
        elif type(module) in _ACTIVATIONS:
            layers.append((_ACTIVATIONS[type(module)],))
        else:
            return None
    if layers[0][0] != "linear" or layers[-1][0] != "linear":
        return None
    return MLPLayout(tuple(layers))


def mlp_forward(layout: MLPLayout, params: Params, inputs: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs ``(tasks, points, out)`` for inputs ``(tasks, points, in)`` with parameters shared by all tasks
    (``(out, in)``) or per task (``(tasks, out, in)``), and what the backward pass needs. Without a task axis
    (inputs ``(points, in)``, shared parameters) it is the network's plain forward pass."""
    saved, h = [], inputs
    for layer in layout.layers:
        if layer[0] == "linear":
            saved.append(h)
            weight, bias = params[layer[1]], params[layer[2]]
            if weight.dim() == 2:  # shared by the tasks: one matrix product with the bias added
                h = torch.nn.functional.linear(h, weight, bias)
            else:  # per task: one batched product with the bias added
                h = torch.baddbmm(bias.unsqueeze(-2), h, weight.transpose(-1, -2))
        elif layer[0] == "relu":
            h = h.relu()
            saved.append(h)
        else:
            h = h.tanh()
            saved.append(h)
    return h, saved


def mse_gradients(layout: MLPLayout, params: Params, inputs: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[Params, torch.Tensor]:
    """Each task's gradient of its mean squared error ``mean((f(x) - y)^2)`` (leading task axis on every
    gradient), and the outputs. Differentiable: a meta-gradient back-propagates through it."""
    out, saved = mlp_forward(layout, params, inputs)
    delta = (out - targets) * (2.0 / (out.shape[-2] * out.shape[-1]))
    grads: Params = {}
    for index in range(len(layout.layers) - 1, -1, -1):
        layer = layout.layers[index]
        if layer[0] == "linear":
            below = saved.pop()
            grads[layer[1]] = delta.transpose(-1, -2) @ below
            grads[layer[2]] = delta.sum(-2)
            if index > 0:
                delta = delta @ params[layer[1]]
        elif layer[0] == "relu":  # ReLU's own backward kernel (differentiable again), one call instead of three
            delta = torch.ops.aten.threshold_backward(delta, saved.pop(), 0)
        else:
            y = saved.pop()
            delta = delta * (1 - y * y)
    return grads, out


class MLPRegressionLoss(BatchedGradientLoss):
    """The mean squared error of an MLP (``layout``) as the shared core's loss, with closed-form task gradients.

    ``loss(params, (inputs, targets))`` is one task's loss (as ``torch.func.grad`` differentiates it);
    :meth:`task_gradients` every task's gradient at once (:func:`mse_gradients`).
    """

    def __init__(self, layout: MLPLayout):
        self.layout = layout

    def __call__(self, params: Params, batch: Any) -> torch.Tensor:
        inputs, targets = batch
        return (self.outputs(params, inputs) - targets).pow(2).mean()

    def outputs(self, params: Params, inputs: torch.Tensor) -> torch.Tensor:
        """The network's outputs (per task where ``inputs`` or ``params`` carry a task axis)."""
        return mlp_forward(self.layout, params, inputs)[0]

    def task_gradients(self, params: Params, task_batches: Any) -> Params:
        inputs, targets = task_batches
        return mse_gradients(self.layout, params, inputs, targets)[0]
