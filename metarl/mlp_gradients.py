"""Closed-form inner steps for small MLP regressors: back-propagation written as batched matrix products.

For an ``nn.Sequential`` of ``nn.Linear`` layers with ReLU or Tanh between them and the mean squared error,
the support-set gradient of every task of a meta-batch is a handful of batched matrix products. Writing them
out (:func:`mse_gradients`) gives the same gradients as ``torch.func.grad`` under ``vmap`` (to rounding), and
a MAML meta-gradient differentiates straight through them, with about half the operator calls: on the
sinusoid benchmark (``scripts/benchmark.py maml-sinusoid``, 25 tasks, a 1-40-40-1 network), where the time is
per-call overhead rather than arithmetic, a meta-iteration takes about half as long.
:class:`~metarl.fewshot.learners.GradientLearner` uses it for regression MLPs and the generic core
(:mod:`metarl.adaptation`) for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarl.adaptation import Params, StepSize, step_size_for

__all__ = ["MLPLayout", "mlp_layout", "mlp_forward", "mse_gradients", "mse_gradient_step"]

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
    (``(out, in)``) or per task (``(tasks, out, in)``), and what the backward pass needs."""
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


def mse_gradient_step(layout: MLPLayout, params: Params, inputs: torch.Tensor, targets: torch.Tensor,
                      step_size: StepSize, *, first_order: bool = False) -> Params:
    """One inner step ``theta - alpha * grad`` for every task at once (as
    :func:`metarl.adaptation.gradient_step` under ``vmap``; Meta-SGD's per-parameter step sizes included)."""
    if first_order:
        with torch.no_grad():
            grads, _ = mse_gradients(layout, {n: p.detach() for n, p in params.items()}, inputs, targets)
    else:
        grads, _ = mse_gradients(layout, params, inputs, targets)
    out = {}
    for name, p in params.items():
        size = step_size_for(step_size, name)
        # a plain step size: one fused call (p + (-size) * g); Meta-SGD's learned tensors: multiply and subtract
        plain = isinstance(size, (int, float))
        out[name] = torch.add(p, grads[name], alpha=-size) if plain else p - size * grads[name]
    return out
