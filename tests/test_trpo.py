"""Conjugate gradient, Fisher-vector products and the line search."""

from __future__ import annotations

import torch

from metarl.trpo import backtracking_line_search, conjugate_gradient, fisher_vector_product_fn, flat, unflat_like


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_fisher_vector_product_is_hessian_vector_product():
    w = torch.randn(3, requires_grad=True, generator=torch.Generator().manual_seed(1))
    kl = (w**4).sum() / 4 + (w[0] * w[1]) ** 2
    fvp = fisher_vector_product_fn(kl, [w], damping=0.1)
    v = torch.tensor([1.0, -1.0, 2.0])
    hessian = torch.autograd.functional.hessian(lambda x: (x**4).sum() / 4 + (x[0] * x[1]) ** 2, w.detach())
    torch.testing.assert_close(fvp(v), hessian @ v + 0.1 * v)


def test_flat_roundtrip():
    tensors = [torch.randn(2, 3), torch.randn(4)]
    back = unflat_like(flat(tensors), tensors)
    assert all(torch.equal(a, b) for a, b in zip(tensors, back))


def test_line_search_backtracks_until_constraints_hold():
    calls = []

    def evaluate(fraction):
        calls.append(fraction)
        return (-1.0, 0.5) if fraction > 0.5 else (-1.0, 0.005)

    fraction, steps = backtracking_line_search(evaluate, old_loss=0.0, max_kl=0.01, ratio=0.5)
    assert fraction == 0.5 and steps == 2 and calls == [1.0, 0.5]
    fraction, steps = backtracking_line_search(lambda f: (1.0, 0.0), old_loss=0.0, max_kl=0.01, max_steps=4)
    assert fraction == 0.0 and steps == 4


def test_conjugate_gradient_of_a_zero_gradient_is_a_zero_step():
    """A sparse-reward batch with no reward gives a zero meta-gradient: the step is zero, not NaN."""
    calls = []

    def matvec(v):
        calls.append(v)
        return 2.0 * v

    x = conjugate_gradient(matvec, torch.zeros(4))
    assert torch.equal(x, torch.zeros(4)) and not calls
