"""The adaptation core: a functional inner loop on ``torch.func``, shared by every learner.

Parameters are plain ``dict[str, Tensor]`` (as from :func:`parameters_of`) and a loss is a pure
function ``loss_fn(params, batch) -> scalar``; :func:`adapt` takes ``steps`` gradient steps on
it. The result stays differentiable with respect to the starting parameters (second-order MAML)
unless ``first_order`` is set, and with respect to learned step sizes (Meta-SGD). Because the loop
is a pure function it ``vmap``s over a leading task dimension (:func:`adapt_batch`). MAML-RL and
few-shot classification/regression all call these functions; none keep
their own inner loop: :func:`inner_loop` is the loop over inner steps with per-step sizes, fresh
support data per step (a callback: MAML-RL's episodes of the policy adapted so far) and the
first-order switch, returning the parameters after every step (multi-step losses read them). A loss that can write every task's gradient in closed form (a
:class:`BatchedGradientLoss`, e.g. :class:`metarl.mlp_gradients.MLPRegressionLoss`) gives it to
:func:`adapt_batch`, which then steps all tasks with it instead of ``vmap``-ing ``torch.func.grad``.

    params = parameters_of(model)
    adapted = adapt(loss_fn, params, support, steps=1, step_size=0.01)
    meta_loss = loss_fn(adapted, query)        # differentiable w.r.t. params
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "map_tasks",
    "Params",
    "LossFn",
    "parameters_of",
    "buffers_of",
    "gradient_step",
    "step_size_for",
    "adapt",
    "adapt_batch",
    "inner_loop",
    "BatchedGradientLoss",
    "adapt_sequence",
    "functional_forward",
    "MetaSGDStepSizes",
    "detach_params",
]

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]
StepSize = float | torch.Tensor | Mapping[str, torch.Tensor]


def parameters_of(module: nn.Module) -> Params:
    """The module's trainable parameters as a name -> tensor dict (the meta-parameters)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def buffers_of(module: nn.Module) -> Params:
    """The module's buffers (e.g. batch-norm statistics) as a dict."""
    return dict(module.named_buffers())


def detach_params(params: Mapping[str, torch.Tensor]) -> Params:
    """Copies of ``params`` cut from the autograd graph."""
    return {k: v.detach() for k, v in params.items()}


def functional_forward(module: nn.Module, params: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
    """Run ``module`` with ``params`` in place of its own (``torch.func.functional_call``).

    Buffers not given in ``params`` come from the module.
    """
    return functional_call(module, dict(params), args, kwargs)


def step_size_for(step_size: StepSize, name: str) -> float | torch.Tensor:
    """The step size of parameter ``name``: ``step_size`` itself, or its entry for Meta-SGD's per-parameter sizes."""
    if isinstance(step_size, Mapping):
        try:
            return step_size[name]
        except KeyError:
            raise KeyError(f"no step size for parameter {name!r}; step sizes cover {sorted(step_size)}") from None
    return step_size


def _check_step_size(step_size: StepSize) -> None:
    if isinstance(step_size, (int, float)) and not step_size > 0:
        raise ValueError(f"inner step size must be positive, got {step_size}")


def gradient_step(
    loss_fn: LossFn, params: Params, batch: Any, step_size: StepSize, *, first_order: bool = False
) -> Params:
    """One inner step ``theta - alpha * grad L(theta; batch)``.

    Args:
        loss_fn: pure function ``(params, batch) -> scalar tensor``.
        params: current parameters.
        batch: the task's support data, passed to ``loss_fn`` unchanged.
        step_size: a float (MAML), a tensor, or a dict of per-parameter tensors shaped like the
            parameters (Meta-SGD's learned step sizes; they receive meta-gradients).
        first_order: treat the gradient as a constant (FOMAML): the result depends on ``params``
            only through the identity term, and no second-order graph is built.
    """
    if first_order:
        grads = grad(loss_fn)(detach_params(params), batch)
    else:
        grads = grad(loss_fn)(params, batch)
    return {name: p - step_size_for(step_size, name) * grads[name] for name, p in params.items()}


def adapt(
    loss_fn: LossFn,
    params: Params,
    batch: Any,
    *,
    steps: int = 1,
    step_size: StepSize = 0.1,
    first_order: bool = False,
) -> Params:
    """``steps`` differentiable gradient steps of ``loss_fn`` on ``batch`` from ``params``.

    Returns the adapted parameters; with ``first_order=False`` they are a differentiable function
    of ``params`` (and of tensor step sizes), so a loss on them back-propagates through the
    whole inner loop.
    """
    _check_step_size(step_size)
    states = inner_loop(loss_fn, params, batch, steps=steps, step_size=step_size, first_order=first_order)
    return states[-1] if states else params


def adapt_sequence(
    loss_fn: LossFn,
    params: Params,
    batches: Any,
    *,
    step_size: StepSize = 0.1,
    first_order: bool = False,
) -> Params:
    """One gradient step per batch of a sequence, in order: online learning from a stream.

    ``batches`` is a ``list`` of batches, or a pytree (tuple, dict, tensor) whose tensors have a
    leading step axis (step ``k`` uses index ``k`` of every leaf). Like :func:`adapt`, the result is differentiable with
    respect to ``params`` (and to anything the batches were computed from) unless ``first_order``:
    OML meta-learns a representation by back-propagating through such a trajectory of
    single-example steps.
    """
    _check_step_size(step_size)
    if isinstance(batches, list):
        sequence = batches
    else:
        leaves, spec = torch.utils._pytree.tree_flatten(batches)
        if not leaves:
            raise ValueError("batches holds no tensors")
        sequence = [torch.utils._pytree.tree_unflatten([leaf[k] for leaf in leaves], spec)
                    for k in range(leaves[0].shape[0])]
    states = inner_loop(loss_fn, params, lambda step, _: sequence[step], steps=len(sequence), step_size=step_size,
                        first_order=first_order)
    return states[-1] if states else params


class BatchedGradientLoss:
    """A loss that also computes every task's gradient at once, in closed form.

    ``loss(params, batch)`` is the per-task loss, as any ``LossFn``; :meth:`task_gradients` takes a batch with a
    leading task axis and parameters shared by all tasks or per task, and returns each task's gradient (a leading
    task axis on every entry), differentiable like ``torch.func.grad``'s. :func:`adapt_batch` steps with it.
    """

    def __call__(self, params: Params, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def task_gradients(self, params: Params, task_batches: Any) -> Params:
        raise NotImplementedError


def _closed_form_steps(loss_fn: BatchedGradientLoss, params: Params, task_batches: Any, steps: int,
                       step_size: StepSize, first_order: bool) -> Params:
    """:func:`adapt_batch` for a :class:`BatchedGradientLoss`: the same steps, all tasks per call."""
    for _ in range(steps):
        if first_order:
            with torch.no_grad():
                grads = loss_fn.task_gradients(detach_params(params), task_batches)
        else:
            grads = loss_fn.task_gradients(params, task_batches)
        stepped = {}
        for name, p in params.items():
            size = step_size_for(step_size, name)
            # a plain step size in one fused call (p + (-size) * g); learned step sizes: multiply and subtract
            plain = isinstance(size, (int, float))
            stepped[name] = torch.add(p, grads[name], alpha=-size) if plain else p - size * grads[name]
        params = stepped
    return params


def adapt_batch(
    loss_fn: LossFn,
    params: Params,
    task_batches: Any,
    *,
    steps: int = 1,
    step_size: StepSize = 0.1,
    first_order: bool = False,
    vectorize: bool = True,
    randomness: str = "error",
    batched_params: bool = False,
) -> Params:
    """:func:`adapt` for many tasks at once.

    ``task_batches`` is a pytree whose tensors have a leading task dimension; the result has the
    same leading dimension on every parameter. With ``vectorize`` the tasks run in one
    ``torch.func.vmap`` call; otherwise in a Python loop (same numbers; a reference, for losses that vmap cannot
    batch, and for convolutions, whose per-task weights vmap turns into grouped convolutions, 2.3x slower on the
    CPU for Conv-4: ``scripts/benchmark.py maml-omniglot``). With ``batched_params`` the starting parameters already
    carry the task dimension (e.g. a further step from per-task adapted parameters).
    """
    if isinstance(loss_fn, BatchedGradientLoss) and vectorize:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"number of inner steps must be a non-negative integer, got {steps!r}")
        _check_step_size(step_size)
        if not batched_params:  # every task starts from the shared parameters (views, as vmap's outputs)
            n_tasks = torch.utils._pytree.tree_leaves(task_batches)[0].shape[0]
            params = {name: p.expand(n_tasks, *p.shape) for name, p in params.items()} if steps == 0 else params
        return _closed_form_steps(loss_fn, params, task_batches, steps, step_size, first_order)

    def one(start: Params, task_batch: Any) -> Params:
        return adapt(loss_fn, start, task_batch, steps=steps, step_size=step_size, first_order=first_order)

    if not torch.utils._pytree.tree_leaves(task_batches):
        raise ValueError("task_batches holds no tensors")
    return map_tasks(one, params, task_batches, in_dims=(0 if batched_params else None, 0), vectorize=vectorize,
                     randomness=randomness)


def inner_loop(
    loss_fn: LossFn,
    params: Params,
    support: Any,
    *,
    steps: int,
    step_size: StepSize | Callable[[int], StepSize] = 0.1,
    first_order: bool = False,
    task_axis: bool = False,
    batched_params: bool = False,
    vectorize: bool = True,
    on_step: Callable[[int, Params], None] | None = None,
) -> list[Params]:
    """The loop over inner steps, written once: ``steps`` gradient steps from ``params``; the parameters after
    each step, in order (``[]`` for no steps).

    Args:
        loss_fn: pure ``(params, batch) -> scalar`` (or a :class:`BatchedGradientLoss`).
        params: the starting (meta-)parameters.
        support: the support batch of every step, or a callable ``support(step, params) -> batch`` giving step
            ``step``'s data (0-based) from the parameters adapted so far: fresh data per step (MAML-RL samples
            episodes of the policy adapted ``step`` steps).
        step_size: one step size for every step, or a callable ``step -> step size`` (per-step sizes: MAML++'s
            learned ones); a step size may be per parameter (Meta-SGD).
        first_order: treat each step's gradient as a constant (FOMAML).
        task_axis: the batches carry a leading task axis and every step is :func:`adapt_batch`'s (vmap, a loop,
            or a closed-form gradient); the parameters gain the task axis at the first step unless
            ``batched_params``. Otherwise one task, one :func:`gradient_step` per step (e.g. inside a ``vmap``).
        batched_params: with ``task_axis``, ``params`` already carry the task axis.
        vectorize: with ``task_axis``, ``vmap`` over tasks (else a loop; the same numbers).
        on_step: called as ``on_step(step, params)`` right after each step (e.g. a query loss per step, computed
            in step order).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"number of inner steps must be a non-negative integer, got {steps!r}")
    states: list[Params] = []
    for step in range(steps):
        batch = support(step, params) if callable(support) else support
        size = step_size(step) if callable(step_size) else step_size
        if task_axis:
            params = adapt_batch(loss_fn, params, batch, steps=1, step_size=size, first_order=first_order,
                                 vectorize=vectorize, batched_params=batched_params or step > 0)
        else:
            _check_step_size(size)
            params = gradient_step(loss_fn, params, batch, size, first_order=first_order)
        states.append(params)
        if on_step is not None:
            on_step(step, params)
    return states


def map_tasks(fn: Callable[..., Any], *args: Any, in_dims: int | tuple[int | None, ...] = 0,
              vectorize: bool = True, randomness: str = "error") -> Any:
    """``fn`` applied to every task's slice of ``args`` (pytrees with a leading task axis where ``in_dims`` is 0,
    shared where it is ``None``), results stacked on a new leading axis: one ``torch.func.vmap`` call, or with
    ``vectorize=False`` a Python loop (the same numbers)."""
    if vectorize:
        return vmap(fn, in_dims=in_dims, randomness=randomness)(*args)
    dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)
    batched = [a for a, d in zip(args, dims) if d is not None]
    n_tasks = torch.utils._pytree.tree_leaves(batched)[0].shape[0]

    def task(t: int) -> tuple[Any, ...]:
        return tuple(a if d is None else torch.utils._pytree.tree_map(lambda x: x[t], a) for a, d in zip(args, dims))

    outs = [fn(*task(t)) for t in range(n_tasks)]
    return torch.utils._pytree.tree_map(lambda *xs: torch.stack(xs), *outs)


class MetaSGDStepSizes(nn.Module):
    """Learned per-parameter inner step sizes (Meta-SGD, Li et al. 2017).

    Holds one tensor per meta-parameter, initialised to ``init``; pass ``step_sizes.as_dict()``
    as ``step_size`` to :func:`adapt` and include ``step_sizes.parameters()`` in the outer
    optimiser.
    """

    def __init__(self, params: Mapping[str, torch.Tensor], init: float = 0.01):
        super().__init__()
        if not init > 0:
            raise ValueError(f"initial Meta-SGD step size must be positive, got {init}")
        self.names = list(params)
        self.values = nn.ParameterList(
            [nn.Parameter(torch.full_like(p.detach(), float(init))) for p in params.values()]
        )

    def as_dict(self) -> Params:
        """Step sizes keyed like the parameters."""
        return dict(zip(self.names, self.values))
