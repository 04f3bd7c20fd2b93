"""Trust-region pieces: conjugate gradient, Fisher-vector products and a backtracking line search.

Used by MAML-TRPO's outer step (Schulman et al. 2015), where the surrogate loss and the KL are
functions of the meta-parameters *through* the inner adaptation step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["flat", "unflat_like", "conjugate_gradient", "fisher_vector_product_fn", "backtracking_line_search"]


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat_like(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split ``vector`` into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vector[i:i + t.numel()].view_as(t))
        i += t.numel()
    return out


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``matvec``.

    A zero ``b`` (e.g. a sparse-reward batch where no episode saw a reward) gives ``x = 0``.
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    if rr < residual_tol:
        return x
    for _ in range(iters):
        Ap = matvec(p)
        pAp = p @ Ap
        if not pAp > 0:  # no curvature left along p (or a non-finite product): keep the solution so far
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product_fn(kl: torch.Tensor, params: Sequence[torch.Tensor], damping: float
                             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (H_KL + damping I) v`` via double back-propagation (graph of ``kl`` is retained)."""
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat_grad = flat(grads)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat_grad @ v, params, retain_graph=True)
        return flat(hv) + damping * v

    return fvp


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]], old_loss: float, max_kl: float, max_steps: int = 15,
    ratio: float = 0.8,
) -> tuple[float, int]:
    """Shrink the step until the loss improves and KL <= ``max_kl``.

    Args:
        evaluate: ``fraction -> (loss, kl)`` with the parameters moved by ``fraction`` of the full step.

    Returns:
        ``(fraction, steps_taken)``; fraction 0.0 when no step was accepted (parameters unchanged).
    """
    fraction = 1.0
    for step in range(max_steps):
        loss, kl = evaluate(fraction)
        if loss < old_loss and kl <= max_kl:
            return fraction, step + 1
        fraction *= ratio
    return 0.0, max_steps
