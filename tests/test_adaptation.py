"""The adaptation core against hand-derived meta-gradients, and vmapped adaptation against the task loop.

The hand computations use quadratic losses, whose gradients and Hessians are closed-form:
support loss ``L_s(w) = 1/2 |A w - b|^2`` (gradient ``A^T (A w - b)``, Hessian ``H = A^T A``) and
query loss ``L_q(w) = 1/2 |C w - d|^2``. One inner step ``w' = w - alpha g_s(w)`` gives

* second-order MAML:  dL_q(w')/dw = (I - alpha H) g_q(w')
* first-order MAML:   g_q(w')
* Meta-SGD (alpha a vector): dL_q/dw = (I - H diag(alpha)) g_q(w'),  dL_q/dalpha = -g_s(w) * g_q(w')
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.adaptation import MetaSGDStepSizes, adapt, adapt_batch, functional_forward, gradient_step, parameters_of


@pytest.fixture(autouse=True)
def _float64():
    """Hand computations are compared in double precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def quadratic_problem(seed: int = 0, dim: int = 4, rows: int = 6):
    g = torch.Generator().manual_seed(seed)
    A, C = torch.randn(rows, dim, generator=g), torch.randn(rows, dim, generator=g)
    b, d = torch.randn(rows, generator=g), torch.randn(rows, generator=g)
    w = torch.randn(dim, generator=g)
    return A, b, C, d, w


def linear_loss(params, batch):
    M, y = batch
    return 0.5 * (M @ params["w"] - y).pow(2).sum()


def test_second_order_step_matches_hand_computation():
    A, b, C, d, w0 = quadratic_problem()
    alpha = 0.05
    w = w0.clone().requires_grad_(True)
    adapted = adapt(linear_loss, {"w": w}, (A, b), steps=1, step_size=alpha)
    linear_loss(adapted, (C, d)).backward()

    g_s = A.T @ (A @ w0 - b)
    w1 = w0 - alpha * g_s
    g_q = C.T @ (C @ w1 - d)
    expected = (torch.eye(4) - alpha * A.T @ A) @ g_q
    torch.testing.assert_close(adapted["w"].detach(), w1)
    torch.testing.assert_close(w.grad, expected)


def test_two_second_order_steps_chain_the_jacobians():
    A, b, C, d, w0 = quadratic_problem(seed=1)
    alpha = 0.03
    w = w0.clone().requires_grad_(True)
    adapted = adapt(linear_loss, {"w": w}, (A, b), steps=2, step_size=alpha)
    linear_loss(adapted, (C, d)).backward()

    jac = torch.eye(4) - alpha * A.T @ A
    w1 = w0 - alpha * A.T @ (A @ w0 - b)
    w2 = w1 - alpha * A.T @ (A @ w1 - b)
    expected = jac @ jac @ (C.T @ (C @ w2 - d))
    torch.testing.assert_close(w.grad, expected)


def test_first_order_step_drops_the_hessian_term():
    A, b, C, d, w0 = quadratic_problem(seed=2)
    alpha = 0.05
    w = w0.clone().requires_grad_(True)
    adapted = adapt(linear_loss, {"w": w}, (A, b), steps=1, step_size=alpha, first_order=True)
    linear_loss(adapted, (C, d)).backward()

    w1 = w0 - alpha * A.T @ (A @ w0 - b)
    torch.testing.assert_close(adapted["w"].detach(), w1)
    torch.testing.assert_close(w.grad, C.T @ (C @ w1 - d))
    # and it really differs from the second-order gradient on this problem
    assert not torch.allclose(w.grad, (torch.eye(4) - alpha * A.T @ A) @ w.grad)


def test_meta_sgd_step_gradients_for_parameters_and_step_sizes():
    A, b, C, d, w0 = quadratic_problem(seed=3)
    w = w0.clone().requires_grad_(True)
    step_sizes = MetaSGDStepSizes({"w": w}, init=0.02)
    with torch.no_grad():  # distinct per-coordinate step sizes so diag(alpha) matters
        step_sizes.values[0].copy_(torch.tensor([0.01, 0.02, 0.03, 0.04]))
    alpha = step_sizes.as_dict()["w"].detach().clone()
    adapted = gradient_step(linear_loss, {"w": w}, (A, b), step_sizes.as_dict())
    linear_loss(adapted, (C, d)).backward()

    g_s = A.T @ (A @ w0 - b)
    w1 = w0 - alpha * g_s
    g_q = C.T @ (C @ w1 - d)
    torch.testing.assert_close(w.grad, (torch.eye(4) - A.T @ A @ torch.diag(alpha)) @ g_q)
    torch.testing.assert_close(step_sizes.values[0].grad, -g_s * g_q)


def _mlp_and_tasks(tasks: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    for p in net.parameters():
        nn.init.normal_(p, std=0.5, generator=g)
    support = (torch.randn(tasks, 7, 3, generator=g), torch.randn(tasks, 7, 2, generator=g))
    query = (torch.randn(tasks, 9, 3, generator=g), torch.randn(tasks, 9, 2, generator=g))

    def loss(params, batch):
        x, y = batch
        return (functional_forward(net, params, x) - y).pow(2).mean()

    return net, loss, support, query


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("meta_sgd", [False, True])
def test_vmapped_adaptation_equals_the_task_loop(first_order, meta_sgd):
    """vmap, a loop over tasks and a loss with closed-form task gradients (metarl.mlp_gradients) take the same
    steps and give the same meta-gradient."""
    from metarl.mlp_gradients import MLPRegressionLoss, mlp_layout

    net, loss, support, query = _mlp_and_tasks()
    params = parameters_of(net)
    step_sizes = MetaSGDStepSizes(params, init=0.1) if meta_sgd else None
    step = step_sizes.as_dict() if meta_sgd else 0.1
    closed_form = MLPRegressionLoss(mlp_layout(net))
    results = {}
    for mode, vectorize in (("closed form", True), (True, True), (False, False)):
        net.zero_grad()
        if step_sizes is not None:
            step_sizes.zero_grad()
        adapted = adapt_batch(closed_form if mode == "closed form" else loss, params, support, steps=2,
                              step_size=step, first_order=first_order, vectorize=vectorize)
        meta_loss = torch.stack([loss({k: v[i] for k, v in adapted.items()}, (query[0][i], query[1][i]))
                                 for i in range(len(query[0]))]).mean()
        meta_loss.backward()
        grads = [p.grad.clone() for p in net.parameters()]
        if step_sizes is not None:
            grads += [p.grad.clone() for p in step_sizes.parameters()]
        results[mode] = ({k: v.detach() for k, v in adapted.items()}, grads)
    adapted_l, grads_l = results[False]
    for adapted_v, grads_v in (results[True], results["closed form"]):
        for name in adapted_v:
            torch.testing.assert_close(adapted_v[name], adapted_l[name])
        for gv, gl in zip(grads_v, grads_l):
            torch.testing.assert_close(gv, gl)
    unadapted = adapt_batch(closed_form, params, support, steps=0)  # each task's copy, as vmap gives
    assert all(unadapted[k].shape == (5, *p.shape) and torch.equal(unadapted[k][3], p) for k, p in params.items())


def test_adapt_batch_matches_adapt_per_task():
    net, loss, support, _ = _mlp_and_tasks(tasks=3, seed=4)
    params = parameters_of(net)
    batched = adapt_batch(loss, params, support, steps=3, step_size=0.05)
    for i in range(3):
        single = adapt(loss, params, (support[0][i], support[1][i]), steps=3, step_size=0.05)
        for name in single:
            torch.testing.assert_close(batched[name][i], single[name])


def test_adapt_rejects_bad_settings():
    net, loss, support, _ = _mlp_and_tasks(tasks=1)
    params = parameters_of(net)
    batch = (support[0][0], support[1][0])
    with pytest.raises(ValueError, match="non-negative integer"):
        adapt(loss, params, batch, steps=-1)
    with pytest.raises(ValueError, match="positive"):
        adapt(loss, params, batch, steps=1, step_size=0.0)
    with pytest.raises(KeyError, match="no step size"):
        adapt(loss, params, batch, steps=1, step_size={"0.weight": torch.tensor(0.1)})
