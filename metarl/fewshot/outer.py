"""The outer loop's optimiser and state handling shared by the few-shot meta-algorithms
(:mod:`metarl.fewshot.algorithms`, :mod:`metarl.fewshot.classification`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl.algorithm import MetaAlgorithm
from metarl.errors import check_finite
from metarl.fewshot.config import FewShotConfig

__all__ = ["OuterAdam", "TrainedModule"]


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


class TrainedModule(MetaAlgorithm):
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
